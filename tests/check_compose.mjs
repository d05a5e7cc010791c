// tests/check_compose.mjs — docker-compose.yml gives each service what deploy/local/up.sh gives
// it, and the pieces of a service agree with each other. There is no Docker daemon where the
// suite runs, so the file is read as Compose reads it (YAML with merge keys) and held against:
//   - the secrets policy of up.sh (kx_service_env in deploy/local/lib.sh, itself held against
//     what each service's code reads by check_service_env.sh): a service up.sh withholds a
//     secret from (`-u NAME`) must not get it here, one it does not withhold it from must; a
//     service whose jails up.sh keeps off Postgres' port (KX_SANDBOX_DENY_PORTS=…) must have
//     the port of this file's KX_DATABASE_URL in its KX_SANDBOX_DENY_PORTS, whatever the
//     operator adds. (Every service here got the database URL — the sandbox-broker and the
//     mcp-proxy, which run users' code in jails, included — and no jail was kept off Postgres,
//     which this file starts with trust authentication.)
//   - every service of KX_SERVICES and the demo model is a service here, runs the binary of its
//     name, which deploy/docker/Dockerfile builds and copies into the image;
//   - each health check asks the port the service is told to serve it on (KX_HEALTH_PORT, the
//     demo model's KX_MODEL_PORT).
// Run by ctest as "compose" (needs tests/node_modules: tests/run.sh installs it); prints each
// disagreement and exits 1.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, 'deploy/local/lib.sh');
const problems = [];
const say = (msg) => problems.push(`compose: ${msg}`);

// What lib.sh says, asked of bash itself (the policy is written once, there).
function fromLib(script, ...args) {
    return execFileSync('bash', ['-c', `. "$0"; ${script}`, lib, ...args], {
        encoding: 'utf8',
        env: { ...process.env, KX_PG_PORT: 'PGPORT', KX_SANDBOX_DENY_PORTS: '' },
    })
        .split('\n')
        .filter((l) => l !== '');
}

const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true });
const dockerfile = readFileSync(join(root, 'deploy/docker/Dockerfile'), 'utf8');
const services = compose.services ?? {};

const dbUrl = services.gateway?.environment?.KX_DATABASE_URL;
const pgPort = /:(\d+)\//.exec(dbUrl ?? '')?.[1];
if (pgPort === undefined) say(`the gateway's KX_DATABASE_URL names no port: ${dbUrl}`);

// A binary the image holds: built by a --target and copied to /out.
function inImage(bin) {
    const built = new RegExp(`--target[^&]*\\s${bin}(\\s|\\\\|$)`).test(dockerfile);
    const copied = dockerfile.includes(`/${bin} /out/`) || new RegExp(`for s in [^;]*\\b${bin}\\b`).test(dockerfile);
    return built && copied;
}

function healthPort(svc) {
    const test = (svc.healthcheck?.test ?? []).join(' ');
    return /127\.0\.0\.1:(\d+)\//.exec(test)?.[1];
}

// A value as Compose interpolates it: ${NAME}, ${NAME:-default}, ${NAME:+replacement}, nested.
function interpolate(text, vars) {
    let out = '';
    for (let i = 0; i < text.length; i++) {
        if (!text.startsWith('${', i)) {
            out += text[i];
            continue;
        }
        let depth = 0;
        let end = i;
        for (; end < text.length; end++) {
            if (text.startsWith('${', end)) depth++;
            else if (text[end] === '}' && --depth === 0) break;
        }
        const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$/s.exec(text.slice(i + 2, end));
        if (m === null) throw new Error(`not an interpolation Compose reads: ${text.slice(i, end + 1)}`);
        const set = (vars[m[1]] ?? '') !== '';
        if (m[2] === '+') out += set ? interpolate(m[3], vars) : '';
        else if (m[2] === '-') out += set ? vars[m[1]] : interpolate(m[3], vars);
        else out += vars[m[1]] ?? '';
        i = end;
    }
    return out;
}

const kxServices = fromLib('printf "%s\\n" "${KX_SERVICES[@]}"');
if (kxServices.length !== 6) say(`KX_SERVICES in deploy/local/lib.sh lists ${kxServices.length} services, want 6`);

for (const name of [...kxServices, 'demo-model']) {
    const svc = services[name];
    if (svc === undefined) {
        say(`no service "${name}"`);
        continue;
    }
    const env = svc.environment ?? {};
    const bin = name === 'demo-model' ? 'kx-demo-model' : name;
    const cmd = Array.isArray(svc.command) ? svc.command[0] : svc.command;
    if (cmd !== bin) say(`${name}: runs "${cmd}", want "${bin}"`);
    if (!inImage(bin)) say(`${name}: deploy/docker/Dockerfile does not build and copy ${bin}`);
    const port = name === 'demo-model' ? env.KX_MODEL_PORT : env.KX_HEALTH_PORT;
    if (port === undefined || String(port) !== healthPort(svc))
        say(`${name}: the health check asks port ${healthPort(svc)}, the service serves ${port}`);
    if (name === 'demo-model') continue;

    const policy = fromLib('kx_service_env "$1"', name);
    for (const secret of ['KX_DATABASE_URL', 'KX_JWT_SECRET']) {
        const withheld = policy.join(' ').includes(`-u ${secret}`);
        if (withheld && secret in env) say(`${name}: gets ${secret}, which up.sh withholds from it`);
        if (!withheld && !(secret in env)) say(`${name}: does not get ${secret}, which it reads (up.sh gives it)`);
    }
    const deny = policy.find((l) => l.startsWith('KX_SANDBOX_DENY_PORTS='));
    if (deny !== undefined) {
        const got = String(env.KX_SANDBOX_DENY_PORTS ?? '');
        for (const operator of ['', '22']) { // without and with the operator's own ports
            const value = interpolate(got, { KX_SANDBOX_DENY_PORTS: operator });
            const ports = value.split(',');
            if (pgPort !== undefined && !ports.includes(pgPort))
                say(`${name}: KX_SANDBOX_DENY_PORTS is "${value}" when the operator sets "${operator}": Postgres' port ${pgPort} is not in it (up.sh adds it)`);
            if (operator !== '' && !ports.includes(operator))
                say(`${name}: KX_SANDBOX_DENY_PORTS is "${value}": the operator's "${operator}" is lost`);
        }
    }
}

for (const p of problems) console.log(p);
process.exit(problems.length === 0 ? 0 : 1);
