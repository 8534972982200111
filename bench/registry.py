"""The registry benchmark's driver (run by bench/registry.sh, which installs and builds first).

Starts a private Postgres, a release `gantry server` and Debian's `docker-registry`, each on a
loopback port of its own with storage in one temp dir; then, for ROUNDS rounds, builds fresh
images and pushes and pulls them through both registries in alternating order; prints the
medians. Everything it starts is stopped, and every image it tags removed, on exit.
"""

import json
import resource
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = os.path.join(ROOT, "target/release/gantry")
TICK = os.sysconf("SC_CLK_TCK")
# name → (layers, bytes per layer)
IMAGES = {"small": (1, 1_300_000), "100MB": (1, 100_000_000), "20 layers": (20, 256_000)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, env=None, stdin=None):
    out = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


class Server:
    """A registry process, and what it costs during one operation."""

    def __init__(self, name, host, proc):
        self.name, self.host, self.proc = name, host, proc

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def reset_peak(self):
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def measure(self, *command, env=None):
        """Wall time, the server's CPU and peak RSS, and the client's own CPU (the docker CLI's
        or skopeo's; dockerd's work is in neither)."""
        self.reset_peak()
        client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = self.cpu(), time.perf_counter()
        run(*command, env=env)
        wall = time.perf_counter() - t0
        client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (client1.ru_utime - client0.ru_utime) + (client1.ru_stime - client0.ru_stime)
        return wall, self.cpu() - cpu0, self.peak_rss_mib(), client


def build_image(tag, layers, size, work):
    ctx = tempfile.mkdtemp(dir=work)
    lines = ["FROM scratch"]
    for i in range(layers):
        with open(os.path.join(ctx, f"f{i}"), "wb") as f:
            f.write(os.urandom(size))
        lines.append(f"COPY f{i} /f{i}")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("\n".join(lines) + "\n")
    run("docker", "build", "-q", "-t", tag, ctx)
    shutil.rmtree(ctx)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = tempfile.mkdtemp(prefix="gantry-registry-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    procs, tags, pg = [], set(), os.path.join(work, "pg")
    try:
        pg_url = run(GANTRY, "db", "start", "--ephemeral", "--data-dir", pg).strip()
        gport, rport = free_port(), free_port()
        env = {
            "PATH": os.environ["PATH"],
            "DATABASE_URL": pg_url,
            "GANTRY_SECRET_KEY": "2" * 64,
            "GANTRY_LISTEN": f"127.0.0.1:{gport}",
            "GANTRY_ROUTER_LISTEN": "127.0.0.1:0",
            "GANTRY_REGISTRY_DIR": os.path.join(work, "gantry"),
            "GANTRY_LOG": "warn",
        }
        log = open(os.path.join(work, "gantry.log"), "w")
        procs.append(subprocess.Popen([GANTRY, "server"], env=env, stdout=log, stderr=log))
        gantry = Server("gantry", f"127.0.0.1:{gport}", procs[-1])
        config = os.path.join(work, "reference.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {work}/reference\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{rport}\n"
            )
        rlog = open(os.path.join(work, "reference.log"), "w")
        procs.append(
            subprocess.Popen(["docker-registry", "serve", config], stdout=rlog, stderr=rlog)
        )
        reference = Server("reference", f"127.0.0.1:{rport}", procs[-1])
        wait_http(f"http://127.0.0.1:{gport}/readyz")
        wait_http(f"http://127.0.0.1:{rport}/v2/")

        # An account, its team and a member token; docker logs in with them.
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def api(path, body):
            req = urllib.request.Request(
                f"http://127.0.0.1:{gport}{path}",
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json", **csrf},
            )
            return json.load(opener.open(req))

        csrf = {}
        email = "bench@example.com"
        signed = api("/api/v1/auth/signup", {"email": email, "password": "correct horse battery"})
        csrf["x-csrf-token"] = signed["csrf_token"]
        team = json.load(opener.open(f"http://127.0.0.1:{gport}/api/v1/teams"))[0]["slug"]
        secret = api("/api/v1/tokens", {"name": "bench", "team": team, "role": "member"})[
            "secret"
        ]
        denv = dict(os.environ, DOCKER_CONFIG=os.path.join(work, "docker"))
        run("docker", "login", gantry.host, "-u", email, "--password-stdin", env=denv, stdin=secret)

        results = {}  # (op, image, server) → [(wall, cpu, rss)]

        def record(op, image, server, figures):
            results.setdefault((op, image, server.name), []).append(figures)

        for r in range(rounds):
            order = [gantry, reference] if r % 2 == 0 else [reference, gantry]
            for image, (layers, size) in IMAGES.items():
                slug = image.replace(" ", "").lower()
                source = f"gantry-bench-{slug}-{os.getpid()}-{r}"
                build_image(source, layers, size, work)
                tags.add(source)
                # docker push, then docker pull with none of its layers in the engine.
                for server in order:
                    target = f"{server.host}/{team}/{slug}:r{r}"
                    run("docker", "tag", source, target)
                    tags.add(target)
                    record("docker push", image, server, server.measure("docker", "push", target, env=denv))
                image_id = run("docker", "image", "inspect", "-f", "{{.Id}}", source).strip()
                for server in order:
                    target = f"{server.host}/{team}/{slug}:r{r}"
                    # Every tag of the image goes, and with them all its layers.
                    run("docker", "rmi", "-f", image_id)
                    record("docker pull", image, server, server.measure("docker", "pull", target, env=denv))
                run("docker", "rmi", "-f", image_id)
                # skopeo: a fresh image, from and to a directory.
                fresh = source + "-sk"
                build_image(fresh, layers, size, work)
                tags.add(fresh)
                src_dir = os.path.join(work, f"dir-{slug}-{r}")
                run("skopeo", "copy", f"docker-daemon:{fresh}:latest", f"dir:{src_dir}")
                for server in order:
                    creds = ["--dest-creds", f"{email}:{secret}"] if server is gantry else []
                    target = f"docker://{server.host}/{team}/{slug}-sk:r{r}"
                    record("skopeo push", image, server, server.measure(
                        "skopeo", "copy", "--dest-tls-verify=false", *creds, f"dir:{src_dir}", target))
                for server in order:
                    creds = ["--src-creds", f"{email}:{secret}"] if server is gantry else []
                    out_dir = os.path.join(work, f"pulled-{server.name}-{slug}-{r}")
                    source_ref = f"docker://{server.host}/{team}/{slug}-sk:r{r}"
                    record("skopeo pull", image, server, server.measure(
                        "skopeo", "copy", "--src-tls-verify=false", *creds, source_ref, f"dir:{out_dir}"))
                    shutil.rmtree(out_dir)
                shutil.rmtree(src_dir)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)

        print(f"\n{rounds} rounds, medians (spread min–max of wall time); server CPU and peak RSS during the operation\n")
        print("| operation | image | gantry wall | reference wall | ratio | gantry CPU | reference CPU | gantry peak RSS | reference peak RSS | client CPU (g / r) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for op in ["docker push", "docker pull", "skopeo push", "skopeo pull"]:
            for image in IMAGES:
                g = results[(op, image, "gantry")]
                ref = results[(op, image, "reference")]
                med = lambda xs, i: statistics.median(x[i] for x in xs)
                spread = lambda xs: f"{min(x[0] for x in xs):.2f}–{max(x[0] for x in xs):.2f}"
                print(
                    f"| {op} | {image} | {med(g, 0):.2f} s ({spread(g)}) | {med(ref, 0):.2f} s ({spread(ref)}) "
                    f"| {med(g, 0) / med(ref, 0):.2f}× | {med(g, 1) * 1000:.0f} ms | {med(ref, 1) * 1000:.0f} ms "
                    f"| {med(g, 2):.0f} MiB | {med(ref, 2):.0f} MiB "
                    f"| {med(g, 3) * 1000:.0f} / {med(ref, 3) * 1000:.0f} ms |"
                )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([GANTRY, "db", "stop", "--data-dir", pg], capture_output=True)
        for tag in tags:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        if os.environ.get("KEEP_WORK") == "1":
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
