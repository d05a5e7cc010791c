/* sbproto.c — encoding and sending the broker <-> sandbox init messages (see sbproto.h). */
#include "sbproto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HDR_LEN 28 /* op u32, id u64, a i32, b i64, nstrs u32 */

size_t sbp_encode(const sbp_msg *m, char *buf, size_t cap)
{
    if (cap < HDR_LEN || m->nstrs > SBP_MAX_STRS)
        return 0;
    uint32_t nstrs = (uint32_t)m->nstrs;
    memcpy(buf, &m->op, 4);
    memcpy(buf + 4, &m->id, 8);
    memcpy(buf + 12, &m->a, 4);
    memcpy(buf + 16, &m->b, 8);
    memcpy(buf + 24, &nstrs, 4);
    size_t len = HDR_LEN;
    for (size_t i = 0; i < m->nstrs; i++) {
        size_t n = strlen(m->strs[i]) + 1;
        if (len + n > cap)
            return 0;
        memcpy(buf + len, m->strs[i], n);
        len += n;
    }
    return len;
}

bool sbp_decode(char *buf, size_t len, sbp_msg *m)
{
    memset(m, 0, sizeof *m);
    m->fds[0] = m->fds[1] = -1;
    if (len < HDR_LEN)
        return false;
    uint32_t nstrs;
    memcpy(&m->op, buf, 4);
    memcpy(&m->id, buf + 4, 8);
    memcpy(&m->a, buf + 12, 4);
    memcpy(&m->b, buf + 16, 8);
    memcpy(&nstrs, buf + 24, 4);
    if (nstrs > SBP_MAX_STRS || m->op < SBP_RUN || m->op > SBP_CONNECTED)
        return false;
    size_t off = HDR_LEN;
    for (uint32_t i = 0; i < nstrs; i++) {
        char *nul = off < len ? memchr(buf + off, '\0', len - off) : NULL;
        if (nul == NULL)
            return false;
        m->strs[i] = buf + off;
        off = (size_t)(nul - buf) + 1;
    }
    m->nstrs = nstrs;
    return off == len;
}

int sbp_send(int sock, const sbp_msg *m, char *buf, size_t cap)
{
    size_t len = sbp_encode(m, buf, cap);
    if (len == 0) {
        errno = EMSGSIZE;
        return -1;
    }
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char b[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    int fds[2];
    int nfds = 0;
    for (int i = 0; i < 2; i++) {
        if (m->fds[i] >= 0)
            fds[nfds++] = m->fds[i];
    }
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

int sbp_recv(int sock, sbp_msg *m, char *buf, size_t cap)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.b,
                        .msg_controllen = sizeof ctl.b};
    ssize_t n;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    int got[4];
    int ngot = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k && ngot < 4; i++)
                memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    bool ok = !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && sbp_decode(buf, (size_t)n, m);
    if (!ok || ngot > 2) {
        for (int i = 0; i < ngot; i++)
            close(got[i]);
        errno = EPROTO;
        return -1;
    }
    for (int i = 0; i < ngot; i++)
        m->fds[i] = got[i];
    return 1;
}
