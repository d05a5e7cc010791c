/* tests/harness/procstat.h — what tests and benchmarks read of a process from /proc: the one
 * walk over /proc/<pid> entries, one parser of /proc/<pid>/stat (state, parent, group, CPU
 * ticks), a process's command line, the states of its threads, the children of a process, and a
 * PostgreSQL data dir's postmaster. Every reader of those files in tests/ goes through here, so
 * the walk and the parse (a command name may hold spaces and parentheses: fields are counted
 * after the last ')') are written once.
 *
 * Ownership: nothing here allocates; out-parameters are the caller's. */
#ifndef KX_TEST_PROCSTAT_H
#define KX_TEST_PROCSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The fields of a stat line that tests use. */
typedef struct kx_th_pstat {
    char state;             /* R, S, D, T (stopped), t (traced), Z (zombie), X (dead), ... */
    pid_t ppid;             /* field 4 */
    pid_t pgrp;             /* field 5 */
    int64_t utime, stime;   /* fields 14, 15: its own CPU, clock ticks */
    int64_t cutime, cstime; /* fields 16, 17: its reaped children's CPU, clock ticks */
} kx_th_pstat;

/* Parses the stat file at path (/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat) into *out.
 * false when the file is gone or not a stat line. */
bool kx_th_pstat_read(const char *path, kx_th_pstat *out);
/* The same for /proc/<pid>/stat. */
bool kx_th_pstat_of(pid_t pid, kx_th_pstat *out);
/* pid exists and is not a zombie or dead (an exited child nobody reaped is not alive). */
bool kx_th_alive(pid_t pid);
/* A clock tick in ns (sysconf(_SC_CLK_TCK)). */
int64_t kx_th_tick_ns(void);

/* The threads of pid: how many there are (*all) and how many are stopped, state T or t
 * (*stopped). false when pid is gone. */
bool kx_th_thread_states(pid_t pid, int *stopped, int *all);

/* The one walk of /proc in tests/: calls visit(pid, arg) for every process on the host (each
 * numeric /proc/<pid> entry, this process included; one that ends meanwhile may still be
 * visited, and then finds its files gone). visit says whether pid counts. Returns how many did,
 * or -1 when /proc cannot be read. */
int kx_th_each_proc(bool (*visit)(pid_t pid, void *arg), void *arg);

/* Calls fn(child, arg) for every live process whose parent is parent. Returns how many, or -1
 * when /proc cannot be read. */
int kx_th_each_child(pid_t parent, void (*fn)(pid_t child, void *arg), void *arg);

/* The command line of pid (/proc/<pid>/cmdline, at most size - 1 bytes of it) into buf,
 * '\0'-terminated: its arguments '\0'-separated, or joined by spaces when joined. Returns its
 * length; 0 (buf "") when pid is gone or a zombie (whose command line is empty). */
size_t kx_th_cmdline_of(pid_t pid, char *buf, size_t size, bool joined);

/* The postmaster's pid from <data_dir>/postmaster.pid (its first line), 0 when unreadable. */
pid_t kx_th_postmaster_of(const char *data_dir);

#endif
