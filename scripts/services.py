#!/usr/bin/env python3
"""Start and stop featurelake's local services: DynamoDB (dynalite), S3 (moto), PostgreSQL, an
Apache Kafka broker (KRaft mode, no ZooKeeper) and the demo's merchant scoring API (scripts/demo_api.py).

Each service is a real, separate process on 127.0.0.1, so the code under test talks to them
exactly as it talks to AWS and to a production database: over the network, with boto3 and JDBC.
Nothing here is mocked in-process. This module is stdlib-only on purpose: `make` runs it
before the virtualenv is complete, and `down` must work even when the venv is gone.

    python scripts/services.py install   # dynalite (npm), postgresql and chromium (apt) if missing
    python scripts/services.py install kafka   # the broker's jars (Maven Central, through Ivy)
    python scripts/services.py up        # what conf/local.yaml uses, on the demo ports (dynalite 8000, moto 9000,
                                         # the demo API 8088)
    python scripts/services.py up postgres   # named ones (pg on 5433, kafka on 9092)
    python scripts/services.py status
    python scripts/services.py down

The test fixtures (tests/service_fixtures.py) call start_dynalite / start_moto / start_postgres /
start_kafka / start_demo_api with port=None: a free port, in-memory or throw-away state, stopped at exit.
"""
from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_PREFIX = REPO / ".cache" / "node"
DYNALITE_CLI = NODE_PREFIX / "node_modules" / "dynalite" / "cli.js"
DYNALITE_SPEC = "dynalite@4"
STATE_DIR = REPO / ".featurelake" / "services"
HOST = "127.0.0.1"
DEMO_PORTS = {"dynalite": 8000, "moto": 9000, "postgres": 5433, "api": 8088, "kafka": 9092}
DEMO_API = REPO / "scripts" / "demo_api.py"
DEMO_API_DATA = REPO / ".featurelake" / "merchant_scores.json"
"""Where generate_data.py writes the API's records for conf/local.yaml (beside its SQLite file)."""
DEMO_API_TOKEN_ENV, DEMO_API_TOKEN = "FEATURELAKE_DEMO_API_TOKEN", "local-demo-token"
"""The bearer token of the `up` API: from this variable, else the default conf/local.yaml also uses."""
PG_USER = PG_PASSWORD = PG_DATABASE = "featurelake"
START_TIMEOUT = float(os.environ.get("FEATURELAKE_SERVICE_TIMEOUT", "60"))
KAFKA_VERSION = "4.0.1"
KAFKA_MODULES = [("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
                 ("org.slf4j", "slf4j-simple", "2.0.16")]  # the broker's log lines, to its log file
"""The broker and its dependencies, from Maven Central through Ivy (the resolver Spark uses for
its own packages); slf4j-simple gives the broker's lines a place to go (its errors at start-up)."""
IVY_CACHE = Path(os.environ.get("FEATURELAKE_IVY") or Path.home() / ".cache" / "featurelake" / "ivy")
"""The same folder as featurelake.spark.IVY_CACHE (this module imports nothing of featurelake)."""
KAFKA_LIB = IVY_CACHE / f"kafka-broker-{KAFKA_VERSION}"
KAFKA_HEAP = os.environ.get("FEATURELAKE_KAFKA_HEAP", "512m")


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why."""


# --------------------------------------------------------------------------- services


@dataclass(eq=False)  # identity semantics: services are tracked in a set
class Service:
    """A running service. `stop()` ends it; it is safe to call twice."""

    name: str
    port: int
    url: str
    log: str
    pid: int | None = None
    host: str = HOST
    scratch: str = ""  # a temp dir this service owns (logs, throw-away data): stop() deletes it
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def stop(self) -> None:
        # The service runs in its own session (start_new_session), so its process group id is
        # its pid: killing the group also ends any children it spawned.
        if self.pid is not None:
            _kill_group(self.pid, self._proc)
            self.pid = None
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        _LIVE.discard(self)

    def state(self) -> dict:
        return {"name": self.name, "port": self.port, "url": self.url, "log": self.log, "pid": self.pid,
                "scratch": self.scratch}


@dataclass(eq=False)
class PostgresService(Service):
    """PostgreSQL: stopped with `pg_ctl stop -m fast`, which ends every backend cleanly."""

    user: str = PG_USER
    password: str = PG_PASSWORD
    database: str = PG_DATABASE
    data_dir: str = ""
    bin_dir: str = ""

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def env(self) -> dict:
        """libpq variables, so `psql`/`pg_dump` need no flags."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": self.database}

    def stop(self) -> None:
        data = Path(self.data_dir)
        if (data / "postmaster.pid").exists():
            _run_pg([f"{self.bin_dir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], check=False)
        self.pid = None
        super().stop()

    def state(self) -> dict:
        return {**super().state(), "data_dir": self.data_dir, "bin_dir": self.bin_dir}


@dataclass(eq=False)
class KafkaService(Service):
    """A single-node Kafka broker in KRaft mode (broker and controller in one JVM); `url` is its
    bootstrap servers, host:port, as a Kafka client wants them."""

    controller_port: int = 0
    data_dir: str = ""

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def state(self) -> dict:
        return {**super().state(), "controller_port": self.controller_port, "data_dir": self.data_dir}


_LIVE: set[Service] = set()


@atexit.register
def _stop_leftovers() -> None:
    """A script that forgets stop() must not leave services behind (`up` ones are not tracked)."""
    for svc in list(_LIVE):
        try:
            svc.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already exited
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_group(pid: int, proc: subprocess.Popen | None = None, timeout: float = 10) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not _alive(pid):
                return
            time.sleep(0.05)


def _tail(log: str | Path, lines: int = 30) -> str:
    try:
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {log})"
    return f"--- last lines of {log} ---\n" + "\n".join(text)


def _wait_until(name: str, probe, alive, log: str | Path, timeout: float) -> None:
    """Poll `probe` until it passes: an open port is not enough, the service must answer."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if not alive():
            raise ServiceError(f"{name} exited during start-up\n{_tail(log)}")
        try:
            probe()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        time.sleep(0.1)
    raise ServiceError(f"{name} did not answer within {timeout:.0f}s (last error: {last})\n{_tail(log)}")


def _spawn(name: str, cmd: list[str], port: int, probe, log: str | Path | None, timeout: float,
           env: dict | None = None) -> Service:
    """Run `cmd` in its own session, logging to `log` (None: a temp dir that stop() deletes);
    `env` is added to its environment (secrets go there, never on the command line)."""
    if _port_open(port):
        raise ServiceError(f"cannot start {name}: port {port} on {HOST} is already in use")
    scratch = "" if log else tempfile.mkdtemp(prefix=f"featurelake-{name}-")
    log = Path(log or Path(scratch) / f"{name}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
    svc = Service(name, port, f"http://{HOST}:{port}", str(log), proc.pid, scratch=scratch, _proc=proc)
    try:
        _wait_until(name, lambda: probe(port), lambda: proc.poll() is None, log, timeout)
    except BaseException:
        svc.stop()
        raise
    return svc


# --------------------------------------------------------------------------- dynalite


def _probe_dynalite(port: int) -> None:
    # dynalite only checks that a SigV4 Authorization header is present, not the signature.
    req = urllib.request.Request(
        f"http://{HOST}:{port}/", data=b"{}", method="POST",
        headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                 "Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Date": "20240101T000000Z",
                 "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/"
                                  "aws4_request, SignedHeaders=host, Signature=0"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        if "TableNames" not in json.loads(resp.read()):
            raise ServiceError("unexpected ListTables answer")


def start_dynalite(port: int | None = None, *, log: str | Path | None = None,
                   timeout: float = START_TIMEOUT) -> Service:
    """DynamoDB API on `port` (free one if None), in memory: every start is an empty database.

    Table state transitions (CREATING -> ACTIVE) take 50 ms instead of dynalite's 500 ms, so code
    still has to wait for ACTIVE as on AWS, but the tests do not sit idle.
    """
    install_dynalite()
    port = port or free_port()
    node = shutil.which("node") or "node"
    cmd = [node, str(DYNALITE_CLI), "--host", HOST, "--port", str(port),
           "--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"]
    return _track(_spawn("dynalite", cmd, port, _probe_dynalite, log, timeout))


# --------------------------------------------------------------------------- moto


def _moto_server() -> str:
    """moto_server from the interpreter's own venv, else the repo's .venv, else PATH."""
    for cand in (Path(sys.executable).parent / "moto_server", REPO / ".venv" / "bin" / "moto_server"):
        if cand.exists():
            return str(cand)
    found = shutil.which("moto_server")
    if not found:
        raise ServiceError("moto_server not found: run `make setup` (needs moto[server] in the venv)")
    return found


def _probe_moto(port: int) -> None:
    with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as resp:  # S3 ListBuckets
        if b"ListAllMyBucketsResult" not in resp.read():
            raise ServiceError("unexpected answer to GET /")


def start_moto(port: int | None = None, *, log: str | Path | None = None,
               timeout: float = START_TIMEOUT) -> Service:
    """S3 (and every other AWS API moto has) on `port`; state lives in memory only."""
    port = port or free_port()
    cmd = [_moto_server(), "-H", HOST, "-p", str(port)]
    return _track(_spawn("moto", cmd, port, _probe_moto, log, timeout))


# --------------------------------------------------------------------------- kafka


def _probe_kafka(port: int) -> None:
    """An ApiVersions request (v0) in Kafka's wire protocol: the broker answers it only once its
    request handlers run, after it has joined its controller's metadata (an open port is earlier)."""
    import struct

    client = b"featurelake-probe"
    request = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    with socket.create_connection((HOST, port), timeout=2) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        head = b""
        while len(head) < 10:
            chunk = conn.recv(10 - len(head))
            if not chunk:
                raise ServiceError("the broker closed the connection")
            head += chunk
    _size, correlation, error = struct.unpack(">iih", head)
    if correlation != 7 or error != 0:
        raise ServiceError(f"unexpected ApiVersions answer (correlation {correlation}, error {error})")


def _kafka_classpath() -> str:
    return str(KAFKA_LIB / "*")


def _kafka_properties(port: int, controller_port: int, data: Path) -> str:
    """One node as broker and controller; topics are created explicitly (a producer's typo must not
    create one); internal topics with one replica, as one broker allows."""
    return "\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@{HOST}:{controller_port}",
        f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{port}", "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT", f"log.dirs={data / 'logs'}", "num.partitions=1",
        "auto.create.topics.enable=false", "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "offsets.topic.num.partitions=4",
        "log.segment.bytes=16777216", ""])


def start_kafka(port: int | None = None, data_dir: str | Path | None = None, *, log: str | Path | None = None,
                timeout: float = START_TIMEOUT, controller_port: int | None = None) -> KafkaService:
    """A Kafka broker (KRaft, no ZooKeeper) on `port`, its controller on `controller_port` (None: another
    free port).

    data_dir=None: a throw-away log directory in a temp dir, deleted by stop(). A given data_dir
    is formatted once and reused, so its topics survive stop/start; the log is data_dir/kafka.log."""
    install_kafka()
    java = shutil.which("java")
    if not java:
        raise ServiceError("java (17+) is needed for the Kafka broker, as for Spark: install it first")
    port = port or free_port()
    controller = controller_port or free_port()
    while controller == port:
        controller = free_port()
    temp = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="featurelake-kafka-") if temp else data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(_kafka_properties(port, controller, data))
    log = Path(log or data / "kafka.log")
    if not (data / "logs" / "meta.properties").exists():
        import base64
        import uuid

        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        res = subprocess.run([java, "-Xmx256m", "-cp", _kafka_classpath(), "kafka.tools.StorageTool", "format",
                              f"--cluster-id={cluster}", "-c", str(props)], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            if temp:
                shutil.rmtree(data, ignore_errors=True)
            raise ServiceError(f"formatting the Kafka log directory {data} failed:\n{res.stdout[-2000:]}"
                               f"{res.stderr[-2000:]}")
    cmd = [java, f"-Xmx{KAFKA_HEAP}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true",
           "-cp", _kafka_classpath(), "kafka.Kafka", str(props)]
    try:
        svc = _spawn("kafka", cmd, port, _probe_kafka, log, timeout)
    except BaseException:
        if temp:
            shutil.rmtree(data, ignore_errors=True)
        raise
    kafka = KafkaService("kafka", port, f"{HOST}:{port}", svc.log, svc.pid, scratch=str(data) if temp else "",
                         _proc=svc._proc, controller_port=controller, data_dir=str(data))
    return _track(kafka)


def restart_kafka(svc: KafkaService, *, timeout: float = START_TIMEOUT) -> KafkaService:
    """The broker `svc` again, after `svc.stop()` or its process was killed (a broker that went away
    and comes back): the same port, controller port and data directory, so its clients' bootstrap
    servers, its topics and the messages it had acknowledged are as before. `svc` must have been
    started with a data_dir of its own (a throw-away one is deleted by stop())."""
    if svc.scratch:
        raise ServiceError("restart_kafka needs a broker started with start_kafka(data_dir=...): stop() deleted "
                           "this one's throw-away data")
    if _alive(svc.pid):
        raise ServiceError(f"the broker on port {svc.port} (pid {svc.pid}) still runs: stop it first")
    svc.stop()  # reaps the killed process, forgets it
    return start_kafka(svc.port, svc.data_dir, log=svc.log, timeout=timeout, controller_port=svc.controller_port)


# --------------------------------------------------------------------------- the demo API


def _probe_api(port: int) -> None:
    with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as resp:
        if json.loads(resp.read()).get("status") != "ok":
            raise ServiceError("unexpected answer to GET /health")


def start_demo_api(port: int | None = None, *, data: str | Path, token: str, log: str | Path | None = None,
                   timeout: float = START_TIMEOUT) -> Service:
    """The demo's merchant scoring API (scripts/demo_api.py) on `port`, serving the records in the
    file `data` (read on every request; absent: none) to requests bearing `token`."""
    port = port or free_port()
    cmd = [sys.executable, str(DEMO_API), "--host", HOST, "--port", str(port), "--data", str(data)]
    return _track(_spawn("api", cmd, port, _probe_api, log, timeout, env={DEMO_API_TOKEN_ENV: token}))


# --------------------------------------------------------------------------- postgres


def _pg_bin_dir() -> str | None:
    version = lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0  # noqa: E731
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    dirs = [d for d in dirs if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists()]
    if dirs:
        return dirs[-1]
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


def _as_postgres() -> list[str]:
    """initdb/pg_ctl refuse to run as root; as root we run them as the `postgres` OS user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _run_pg(cmd: list[str], check: bool = True, env: dict | None = None, timeout: float = 120):
    res = subprocess.run(_as_postgres() + cmd, capture_output=True, text=True, cwd="/",
                         env={**os.environ, **(env or {})}, timeout=timeout)
    if check and res.returncode != 0:
        raise ServiceError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def _psql(svc: PostgresService, sql: str, database: str | None = None) -> str:
    res = subprocess.run([f"{svc.bin_dir}/psql", "-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql,
                          "-h", svc.host, "-p", str(svc.port), "-U", svc.user, "-d", database or svc.database],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": svc.password},
                         timeout=30)
    if res.returncode != 0:
        raise ServiceError(f"psql failed: {res.stderr.strip()}")
    return res.stdout.strip()


def _initdb(bin_dir: str, data: Path) -> None:
    """A cluster whose superuser is featurelake/featurelake, reachable over TCP on 127.0.0.1 only.

    Unix sockets are off so clusters never collide on a socket directory, and durability is
    off (fsync, full_page_writes): these are local, disposable databases.
    """
    fd, pwfile = tempfile.mkstemp(prefix="featurelake-pw-")
    try:
        os.write(fd, PG_PASSWORD.encode() + b"\n")
        os.close(fd)
        _chown_postgres(Path(pwfile))
        _run_pg([f"{bin_dir}/initdb", "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"])
    finally:
        os.unlink(pwfile)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# featurelake local service\n"
                   f"listen_addresses = '{HOST}'\nunix_socket_directories = ''\n"
                   "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n")


def start_postgres(port: int | None = None, data_dir: str | Path | None = None, *,
                   timeout: float = START_TIMEOUT) -> PostgresService:
    """PostgreSQL on `port` with role and database `featurelake` (password `featurelake`).

    data_dir=None: a throw-away cluster in a temp dir, deleted by stop(). A given data_dir is
    initialised once and reused, so its data survives stop/start. The log is data_dir/server.log.
    """
    bin_dir = install_postgres()
    port = port or free_port()
    if _port_open(port):
        raise ServiceError(f"cannot start postgres: port {port} on {HOST} is already in use")
    temp = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="featurelake-pg-") if temp else data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    _chown_postgres(data)
    data.chmod(0o700)
    log = data / "server.log"
    svc = PostgresService("postgres", port, "", str(log), data_dir=str(data), bin_dir=bin_dir,
                          scratch=str(data) if temp else "")
    svc.url = svc.dsn
    try:
        if not (data / "PG_VERSION").exists():
            _initdb(bin_dir, data)
        res = _run_pg([f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(log), "-o", f"-p {port}",
                       "-w", "-t", str(int(timeout)), "start"], check=False, timeout=timeout + 10)
        if res.returncode != 0:
            raise ServiceError(f"pg_ctl start failed:\n{res.stdout}{res.stderr}\n{_tail(log)}")
        svc.pid = _pg_pid(data)

        def probe(_port):
            ready = subprocess.run([f"{bin_dir}/pg_isready", "-h", HOST, "-p", str(port)],
                                   capture_output=True, text=True)
            if ready.returncode != 0:
                raise ServiceError(ready.stdout.strip())
            _psql(svc, "select 1", database="postgres")

        _wait_until("postgres", lambda: probe(port), lambda: _alive(_pg_pid(data)), log, timeout)
        if not _psql(svc, f"select 1 from pg_database where datname = '{PG_DATABASE}'", database="postgres"):
            _psql(svc, f"create database {PG_DATABASE}", database="postgres")
    except BaseException:
        svc.stop()
        raise
    return _track(svc)


def _pg_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _track(svc: Service) -> Service:
    _LIVE.add(svc)
    return svc


# --------------------------------------------------------------------------- install


def install_dynalite() -> None:
    """dynalite into <repo>/.cache/node, so nothing global is touched and reruns skip npm."""
    if DYNALITE_CLI.exists():
        return
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise ServiceError("node and npm (Node.js >= 20) are needed for dynalite; install them first")
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund",
                          "--loglevel=error", DYNALITE_SPEC], capture_output=True, text=True)
    if res.returncode != 0 or not DYNALITE_CLI.exists():
        raise ServiceError(f"npm install {DYNALITE_SPEC} failed:\n{res.stdout}{res.stderr}")


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(f"{package} is missing: install the Debian package `{package}` (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def install_postgres() -> str:
    """The PostgreSQL server binaries' directory, installing the Debian package if missing."""
    bin_dir = _pg_bin_dir()
    if bin_dir:
        return bin_dir
    _apt_install("postgresql")
    bin_dir = _pg_bin_dir()
    if not bin_dir:
        raise ServiceError("apt-get installed postgresql but no initdb/pg_ctl was found")
    return bin_dir


def _ivy_jar() -> Path:
    """Ivy, as pyspark ships it (the resolver behind spark.jars.packages), from this interpreter's
    site-packages or the repository's .venv."""
    roots = [Path(p) for p in sys.path if p.endswith("site-packages")]
    roots += sorted((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    for root in roots:
        found = sorted((root / "pyspark" / "jars").glob("ivy-*.jar"))
        if found:
            return found[-1]
    raise ServiceError("Ivy (pyspark's jars/ivy-*.jar) not found: run `make setup` first, which installs pyspark")


def install_kafka() -> Path:
    """The broker's jars (KAFKA_MODULES and their dependencies) into KAFKA_LIB, resolved by Ivy
    from Maven Central into its own cache beside Spark's; a no-op once they are there."""
    done = KAFKA_LIB / ".resolved"
    if done.exists():
        return KAFKA_LIB
    java = shutil.which("java")
    if not java:
        raise ServiceError("java (17+) is needed to resolve and run the Kafka broker: install it first")
    KAFKA_LIB.mkdir(parents=True, exist_ok=True)
    deps = "\n".join(f'    <dependency org="{o}" name="{n}" rev="{v}" conf="default->default"/>'
                      for o, n, v in KAFKA_MODULES)
    with tempfile.TemporaryDirectory(prefix="featurelake-ivy-") as tmp:
        ivy_xml = Path(tmp) / "ivy.xml"
        ivy_xml.write_text('<ivy-module version="2.0">\n  <info organisation="featurelake" module="kafka-broker"/>\n'
                           f"  <dependencies>\n{deps}\n  </dependencies>\n</ivy-module>\n")
        cmd = [java, "-jar", str(_ivy_jar()), "-ivy", str(ivy_xml), "-cache", str(IVY_CACHE / "kafka-cache"),
               "-retrieve", str(KAFKA_LIB / "[organisation]_[artifact]-[revision](-[classifier]).[ext]"), "-sync"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    jars = list(KAFKA_LIB.glob("*.jar"))
    if res.returncode != 0 or not any(j.name.startswith("org.apache.kafka_kafka_2.13-") for j in jars):
        raise ServiceError(f"resolving {KAFKA_MODULES[0][1]}:{KAFKA_VERSION} from Maven Central failed:\n"
                           f"{res.stdout[-3000:]}{res.stderr[-2000:]}")
    done.write_text(f"{len(jars)} jars\n")
    return KAFKA_LIB


def install(names: list[str] | None = None) -> None:
    """Idempotent; a no-op taking milliseconds when everything is already there. `names`: only
    what those services need (`up` of the demo's services installs no PostgreSQL or chromium)."""
    if names is not None:
        if "dynalite" in names:
            install_dynalite()
        if "postgres" in names:
            install_postgres()
        if "kafka" in names:
            install_kafka()
        return
    install_dynalite()
    install_postgres()
    if not shutil.which("chromium"):  # the monitoring report test renders the HTML page headless
        _apt_install("chromium")


# --------------------------------------------------------------------------- CLI


def _state_file(name: str) -> Path:
    return STATE_DIR / f"{name}.json"


def _load(name: str) -> Service | None:
    try:
        state = json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None
    cls = {"postgres": PostgresService, "kafka": KafkaService}.get(name, Service)
    return cls(**state)


def _ours(svc: Service) -> bool:
    """The recorded pid is alive and still runs our program (pids get reused)."""
    if svc.name == "postgres":
        svc.pid = _pg_pid(Path(svc.data_dir))
        return _alive(svc.pid)
    programs = {"dynalite": "dynalite", "moto": "moto_server", "api": DEMO_API.name, "kafka": "kafka.Kafka"}
    return _alive(svc.pid) and programs[svc.name] in _cmdline(svc.pid)


def _running(svc: Service) -> bool:
    """Our process, and it answers a real request."""
    if not _ours(svc):
        return False
    try:
        if svc.name == "postgres":
            _psql(svc, "select 1")
        else:
            {"dynalite": _probe_dynalite, "moto": _probe_moto, "api": _probe_api,
             "kafka": _probe_kafka}[svc.name](svc.port)
        return True
    except Exception:  # noqa: BLE001
        return False


def _pg_data_dir() -> Path:
    """STATE_DIR/postgres; as root in a clone the `postgres` user cannot enter (a mode-700 parent,
    such as root's home or `mktemp -d`), a directory of its own under /var/tmp instead."""
    data = STATE_DIR / "postgres"
    if os.geteuid() != 0 or data.exists():
        return data
    probe = subprocess.run(_as_postgres() + ["test", "-x", str(STATE_DIR)], capture_output=True)
    if probe.returncode == 0:
        return data
    import hashlib

    return Path("/var/tmp") / f"featurelake-postgres-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}"


def needed(config: Path) -> list[str]:
    """The services a config uses: those whose demo port its text names (stdlib only: no YAML
    parser here). The demo's conf/local.yaml names dynalite's and moto's, not PostgreSQL's (its
    payments come from SQLite)."""
    text = config.read_text() if config.exists() else ""
    return [name for name, port in DEMO_PORTS.items() if f":{port}" in text] or list(DEMO_PORTS)


def up(names: list[str] | None = None) -> None:
    """Starts `names` (default: what $FEATURELAKE_CONF or conf/local.yaml uses) on the demo ports.
    If one fails, the ones this call started are stopped again: a retry starts from clean ports."""
    if not names:
        names = needed(Path(os.environ.get("FEATURELAKE_CONF") or REPO / "conf" / "local.yaml"))
    unknown = [n for n in names if n not in DEMO_PORTS]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(unknown)}: choose from {', '.join(DEMO_PORTS)}")
    install(names)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    starters = {
        "dynalite": lambda p: start_dynalite(p, log=STATE_DIR / "dynalite.log"),
        "moto": lambda p: start_moto(p, log=STATE_DIR / "moto.log"),
        "postgres": lambda p: start_postgres(p, data_dir=_pg_data_dir()),
        "api": lambda p: start_demo_api(p, data=DEMO_API_DATA, log=STATE_DIR / "api.log",
                                        token=os.environ.get(DEMO_API_TOKEN_ENV, DEMO_API_TOKEN)),
        "kafka": lambda p: start_kafka(p, data_dir=STATE_DIR / "kafka"),
    }
    started: list[tuple[str, Service]] = []
    try:
        for name in names:
            old = _load(name)
            if old and _running(old):
                print(f"{name:9} already running at {old.url} (pid {old.pid})")
                continue
            t0 = time.monotonic()
            svc = starters[name](DEMO_PORTS[name])
            started.append((name, svc))
            _LIVE.discard(svc)  # `up` services outlive this command; `down` stops them
            _state_file(name).write_text(json.dumps(svc.state(), indent=2))
            print(f"{name:9} started at {svc.url} (pid {svc.pid}, {time.monotonic() - t0:.1f}s)")
    except BaseException:
        for name, svc in reversed(started):
            svc.stop()
            _state_file(name).unlink(missing_ok=True)
            print(f"{name:9} stopped again (services-up failed)", file=sys.stderr)
        raise


def down() -> None:
    for name in DEMO_PORTS:
        svc = _load(name)
        if svc is None:
            print(f"{name:9} not running")
            continue
        if _ours(svc):
            svc.stop()
            print(f"{name:9} stopped")
        else:
            print(f"{name:9} not running (stale state removed)")
        _state_file(name).unlink(missing_ok=True)


def status() -> int:
    """Exit status 0 only when the services the config uses (see `needed`) answer."""
    ok = True
    wanted = needed(Path(os.environ.get("FEATURELAKE_CONF") or REPO / "conf" / "local.yaml"))
    for name in DEMO_PORTS:
        svc = _load(name)
        if svc and _running(svc):
            print(f"{name:9} running at {svc.url} (pid {svc.pid}, log {svc.log})")
        else:
            ok = ok and name not in wanted
            print(f"{name:9} stopped{'' if name in wanted else ' (not used by the config)'}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    cmds = {"install": install, "up": up, "down": down, "status": status}
    if not argv or argv[0] not in cmds or (len(argv) > 1 and argv[0] not in ("up", "install")):
        print(f"usage: {Path(__file__).name} {'|'.join(cmds)} (up and install take service names: "
              f"{' '.join(DEMO_PORTS)})", file=sys.stderr)
        return 2
    try:
        if argv[0] in ("up", "install"):
            return cmds[argv[0]](argv[1:] or None) or 0
        return cmds[argv[0]]() or 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
