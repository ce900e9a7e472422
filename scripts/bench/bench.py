#!/usr/bin/env python3
"""The benchmark behind scripts/bench.sh. Expects the native stack of scripts/dev.sh to be up
(release build, state in OPD_DEV_DIR) and wrk and pgbench on PATH; prints a table and writes
target/bench/results.json.

Every figure comes from this run on this machine: throughput and latency from wrk, hop latency
from what the services record (processed_events: ce-time of the event against the time it was
handled), CPU time from /proc, database floors from pgbench on the same PostgreSQL instance.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV = Path(os.environ["OPD_DEV_DIR"])
OUT = ROOT / "target" / "bench"
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
# Patients a second in the journey phase: four requests and four events each.
JOURNEY_RATE = int(os.environ.get("BENCH_JOURNEY_RATE", "200"))
PG = "postgres://postgres:postgres@127.0.0.1:5433"
REGISTRATION = "http://127.0.0.1:9090"
INSPECTION = "http://127.0.0.1:9091"
TREATMENT = "http://127.0.0.1:9092"
RELEASE = "http://127.0.0.1:9093"
INSPECTION_CONSUMER = "inspection-patient-register"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The book's Go sample (one NATS node, MariaDB committing each insert to disk, fire-and-forget
# core NATS), measured on this kind of machine beside this platform in one run on 2026-12-03.
# "× book" is the ratio to them, unless the sample runs beside this one (BOOK_URL).
BOOK = {"register_1": 1804, "register_8": 3020, "register_64": 2762, "view_64": 4853}
# A running copy of the book's sample, its registration service's base URL (docs/benchmarks.md,
# "The book's sample in the same run"): each registration point and the view point then run
# against it too, right after this platform's, with the same scripts, connections and
# durations, and "× book" divides by those figures.
BOOK_URL = os.environ.get("BENCH_BOOK_URL", "").rstrip("/") or None
# The sample keeps a patient's id in 32 bits and answers 200 when its insert fails, so its runs
# take ids from below 2^32: each run a block of three spans (wrk's threads are numbered 1 and
# 2), each bench a stretch of eight blocks chosen by the minute it started.
BOOK_SPAN = 10**6
BOOK_RUN_BASE = int(time.time()) // 60 % 170 * 25 * 10**6
# Every run registers new patients: ids of one run never meet another's. Below 9 * 10^15, so
# that with the phases' and threads' offsets every id stays within a patient id's range
# (2^53 - 1): `% 10_000` made one run in ten, by the clock, register nothing but 400s.
RUN_BASE = int(time.time()) % 9_000 * 10**12


def log(message):
    print(f"\033[1;34m==>\033[0m {message}", file=sys.stderr, flush=True)


class Session:
    """One psql process and its connection, kept open for the queries of one thread. A psql
    started per query costs about 28 ms of CPU and PostgreSQL a backend of about 7 ms: the
    wait sampler's ten a second took up to an eighth of this machine's two cores during the
    phases it watches, and the backends' share was charged to the platform's CPU per
    registration."""

    END = "@@bench-query-end@@"

    def __init__(self, database):
        # Its messages go to a file: a pipe nobody reads would stop psql once full.
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", f"{PG}/{database}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
            text=True, bufsize=1)

    def query(self, sql):
        """The rows of `sql`, one line each. A failed statement ends psql (ON_ERROR_STOP), and
        the run with its message."""
        try:
            self.process.stdin.write(f"{sql.strip().rstrip(';')};\n\\echo {self.END}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # psql has ended: its message is read below
        lines = []
        while (line := self.process.stdout.readline()) != f"{self.END}\n":
            if not line:
                self.errors.seek(0)
                raise SystemExit(f"psql ended on {sql.strip()[:200]!r}: "
                                 f"{self.errors.read().strip()}")
            lines.append(line.rstrip("\n"))
        return "\n".join(lines).strip()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.errors.close()


sessions = threading.local()


def psql(database, sql):
    """`sql`'s result, on this thread's session with `database`."""
    if not hasattr(sessions, "by_database"):
        sessions.by_database = {}
    if database not in sessions.by_database:
        sessions.by_database[database] = Session(database)
    return sessions.by_database[database].query(sql)


def close_sessions():
    """Ends this thread's sessions (a thread that queried and is about to end)."""
    for session in getattr(sessions, "by_database", {}).values():
        session.close()
    sessions.by_database = {}


def scalar(database, sql):
    value = psql(database, sql)
    return float(value) if value else 0.0


def dev(*args):
    subprocess.run([str(ROOT / "scripts" / "dev.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


phase_counter = 0


def wrk(script, connections, duration, url=REGISTRATION, done=None, **env):
    """Runs wrk with `script`; returns its summary (see the done() of the Lua scripts). `done`,
    if given, is asked five times a second whether the run can end before its duration."""
    global phase_counter
    phase_counter += 1
    threads = min(connections, 2)
    environment = dict(os.environ, BENCH_THREADS=str(threads),
                       BENCH_ID_BASE=str(RUN_BASE + phase_counter * 10**9))
    environment.update({k: str(v) for k, v in env.items()})
    process = subprocess.Popen(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
         "--timeout", "10s", "-s", str(ROOT / "scripts" / "bench" / script), url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    # wrk sleeps out its whole duration even when every thread has stopped (BENCH_LIMIT);
    # SIGINT ends it at once, and it still prints its summary.
    if done is not None:
        while process.poll() is None and not done():
            time.sleep(0.2)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"wrk failed ({process.returncode}): {stderr}")
    line = next(l for l in stdout.splitlines() if l.startswith("BENCH "))
    summary = json.loads(line[len("BENCH "):])
    seconds = summary["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": summary["requests"],
        "throughput": round(summary["requests"] / seconds, 1),
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "p999_ms": summary["p999_us"] / 1000,
        "errors": summary["non_2xx"] + summary["socket_errors"],
    }


book_counter = 0


def book_patient(patient_id):
    """The full name the book's sample holds for `patient_id`, or None if it holds none (its
    view answers an empty patient then)."""
    try:
        with urllib.request.urlopen(f"{BOOK_URL}/opd/patient/view/{patient_id}",
                                    timeout=10) as r:
            patient = json.load(r)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        raise SystemExit(f"the book's sample at {BOOK_URL} did not answer a view: {error}")
    return patient.get("full_name") if patient.get("id") == patient_id else None


def machine_at_rest(timeout=90, idle_cores=0.25):
    """Waits until the whole machine has used less than `idle_cores` for two seconds in a row
    (from /proc/stat). After a run of the book's sample: its inspection goes on handling the
    run's events and MariaDB on flushing its pages after the answers, in processes the
    platform's own rest (`settled`) does not watch, and the platform's next point would pay
    for them."""
    def busy():
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # user, nice, system, irq, softirq, steal: not idle, not waiting for the disk
        return sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7)) / CLOCK_TICKS
    if quiet_for_two_seconds(busy, idle_cores, timeout) is None:
        log(f"the machine did not come to rest within {timeout} s after the book's sample")


def book_register(connections, duration):
    """`register.lua` against the book's sample, on ids it has never been sent; returns wrk's
    figures and the run's id base. The sample answers 200 even when its insert fails (a
    duplicate id, one over 32 bits), so the bench checks that the run's hundredth patient (of
    wrk's first thread: wrk asks a script for one request before it sends any) was absent
    before and stored after, and stops otherwise: figures of failed inserts would flatter
    it."""
    global book_counter
    book_counter += 1
    if book_counter > 8:
        raise SystemExit("the book's sample: more runs than its id stretch holds")
    base = BOOK_RUN_BASE + book_counter * 3 * BOOK_SPAN
    probe = base + BOOK_SPAN + 100
    if book_patient(probe) is not None:
        raise SystemExit(f"the book's sample already holds patient {probe}: start it on an "
                         "empty patient_details table (docs/benchmarks.md)")
    # The platform at rest first, so that none of its work is charged to the sample.
    settled()
    result = wrk("register.lua", connections, duration, url=BOOK_URL,
                 BENCH_ID_BASE=base, BENCH_ID_SPAN=BOOK_SPAN)
    if book_patient(probe) != f"bench patient {probe}":
        raise SystemExit(f"the book's sample answered its registrations but did not store "
                         f"patient {probe}: see its log")
    machine_at_rest()
    result["name"] = "book register"
    return result, base


def registered():
    return int(scalar("opd_registration", "select count(*) from outbox"))


def handled():
    return int(scalar("opd_inspection",
                      f"select count(*) from processed_events where consumer = '{INSPECTION_CONSUMER}'"))


def caught_up(timeout=180):
    """Waits until inspection has handled every registration event; returns the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if handled() >= registered():
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"inspection did not catch up within {timeout} s "
                     f"({handled()} of {registered()} handled)")


# --- CPU and memory from /proc --------------------------------------------------------------

def pid_of(name):
    return int((DEV / "run" / f"{name}.pid").read_text().strip())


def stat(pid):
    """utime, stime, cutime, cstime in seconds, and the parent pid."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    ticks = [int(fields[i]) for i in (11, 12, 13, 14)]
    return [t / CLOCK_TICKS for t in ticks], int(fields[1])


def postgres_pids():
    postmaster = int((DEV / "pg" / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if stat(int(entry.name))[1] == postmaster:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    return postmaster, children


SERVICES = ["registration", "inspection", "treatment", "release", "board"]
NODES = ["nats-1", "nats-2", "nats-3"]


def cpu_seconds():
    """CPU time so far of every running process of the platform, by group (a service stopped
    on purpose, as the board in the phase without it, is left out)."""
    groups = {}
    for name in SERVICES + NODES:
        try:
            times, _ = stat(pid_of(name))
        except (FileNotFoundError, ValueError):
            continue
        groups[name] = sum(times)
    postmaster, children = postgres_pids()
    times, _ = stat(postmaster)
    total = sum(times)  # includes the children that have exited (cutime, cstime)
    for child in children:
        try:
            child_times, _ = stat(child)
            total += child_times[0] + child_times[1]
        except FileNotFoundError:
            pass
    groups["postgres"] = total
    return groups


def status_mb(name, *fields):
    """Memory figures of a service's /proc status, in MB of 1,024 kB, by field name."""
    figures = {}
    for line in Path(f"/proc/{pid_of(name)}/status").read_text().splitlines():
        field, _, value = line.partition(":")
        if field in fields:
            figures[field] = round(int(value.split()[0]) / 1024, 1)
    return figures


# --- phases -----------------------------------------------------------------------------------

def registration_phases(results):
    log("warm-up: 3 s of registrations at 8 connections")
    wrk("register.lua", 8, 3)
    caught_up()
    if BOOK_URL:
        log("the book's sample: warm-up, 3 s at 8 connections")
        book_register(8, 3)
    maximum = 0
    for connections in (1, 8, 64):
        # Each point on a platform at rest: the board's projection and autovacuum still at
        # work on the point before would be charged to this one.
        waited, _ = settled()
        log(f"registration at {connections} connection(s), {DURATION} s")
        reset_statements()
        before = registered()
        cpu_before = cpu_seconds()
        result = wrk("register.lua", connections, DURATION)
        drained_in = caught_up()
        cpu_after = cpu_seconds()
        count = registered() - before
        result["name"] = "register"
        result["drained_after_s"] = round(drained_in, 1)
        result["settled_after_s"] = waited
        results["runs"].append(result)
        if BOOK_URL:
            log(f"the book's sample at {connections} connection(s), {DURATION} s")
            results["runs"].append(book_register(connections, DURATION)[0])
        if connections == 64:
            maximum = result["throughput"]
            results["postgres_profile"] = statement_profile(count)
            results["cpu_ms_per_registration"] = {
                **cpu_ms_per(cpu_before, cpu_after, count),
                "registrations": count,
                "window": "the 64-connection run and the drain after it",
            }
    return maximum


def reset_statements():
    for database in ("opd_registration", "opd_inspection"):
        psql(database, "create extension if not exists pg_stat_statements")
    psql("opd_registration", "select pg_stat_statements_reset()")


def statement_profile(registrations):
    """PostgreSQL's own time per registration, by statement, over the last phase and its drain:
    the database half of the CPU profile."""
    rows = psql("opd_registration", """
        select d.datname, s.calls, round(s.total_exec_time::numeric, 1),
               regexp_replace(left(s.query, 90), '\s+', ' ', 'g')
        from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname like 'opd_%' and s.calls > 0
        order by s.total_exec_time desc limit 8""")
    profile = []
    for line in rows.splitlines():
        database, calls, total_ms, query = line.split("|", 3)
        profile.append({"database": database, "calls": int(calls),
                        "ms_per_registration": round(float(total_ms) / max(registrations, 1), 4),
                        "query": query})
    return profile


def view_run(ids, url=REGISTRATION):
    """`view.lua` at 64 connections over `ids` (the patients it views, in turn)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as file:
        file.write("\n".join(map(str, ids)) + "\n")
        file.flush()
        return wrk("view.lua", 64, DURATION, url=url, BENCH_IDS=file.name)


def view_phase(results):
    def some_patients():
        return psql("opd_registration", "select id from patients order by random() limit 2000")
    ids = some_patients()
    if len(ids.split()) < 2000:
        # Run without the registration phase: views of patients that do not exist would be
        # counted as errors, not as views.
        log("registering patients to view: 3 s at 8 connections")
        wrk("register.lua", 8, 3)
        ids = some_patients()
    waited, _ = settled()
    log(f"view at 64 connections, {DURATION} s")
    result = view_run(ids.split())
    result["settled_after_s"] = waited
    result["name"] = "view"
    results["runs"].append(result)
    if BOOK_URL:
        log("the book's sample: registering patients to view, 3 s at 8 connections")
        _, base = book_register(8, 3)
        # A thousand of each of wrk's two threads; the last of each must be there.
        ids = [base + thread * BOOK_SPAN + n for thread in (1, 2) for n in range(100, 1100)]
        for last in (ids[999], ids[-1]):
            if book_patient(last) != f"bench patient {last}":
                raise SystemExit(f"the book's sample did not store patient {last} to view")
        settled()
        log(f"the book's sample: view at 64 connections, {DURATION} s")
        book = view_run(ids, url=BOOK_URL)
        machine_at_rest()
        book["name"] = "book view"
        results["runs"].append(book)


def commit_counts():
    """Transactions committed so far, by database, and the WAL flushes of the whole server (each
    a wait for the disk when it is durable). Read-only transactions count as commits too, but
    wait for nothing."""
    rows = psql("postgres", """
        select datname, xact_commit from pg_stat_database where datname like 'opd_%'""")
    counts = {}
    for line in rows.splitlines():
        name, commits = line.split("|")
        counts[name.removeprefix("opd_")] = int(commits)
    counts["wal_flushes"] = int(scalar("postgres", "select wal_sync from pg_stat_wal"))
    return counts


def per_registration(before, after, count):
    return {k: round((after[k] - before[k]) / max(count, 1), 3) for k in before}


def cpu_ms_per(before, after, count):
    """CPU milliseconds per unit of work (registration, visit) by process, and their total."""
    per_process = per_registration({k: v * 1000 for k, v in before.items()},
                                   {k: v * 1000 for k, v in after.items()}, count)
    return {"total": round(sum(per_process.values()), 3), **per_process}


def unpublished(service):
    """Rows of `service`'s outbox the relay has not published yet."""
    return int(scalar(f"opd_{service}",
                      "select count(*) from outbox where published_at is null"))


class WaitSampler:
    """What registration's database sessions are doing, sampled every 100 ms while a phase
    runs (pg_stat_activity): running, or waiting, and on what (a row lock, the WAL flush…).
    The share of samples per state says where a registration's time in the database goes."""

    def __init__(self, database="opd_registration"):
        self.database, self.counts, self.samples = database, {}, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            while not self.stop.wait(0.1):
                rows = psql("postgres", f"""
                    select coalesce(wait_event_type || ':' || wait_event, 'running'), count(*)
                    from pg_stat_activity
                    where datname = '{self.database}' and state = 'active' group by 1""")
                self.samples += 1
                for line in rows.splitlines():
                    name, count = line.split("|")
                    self.counts[name] = self.counts.get(name, 0) + int(count)
        finally:
            close_sessions()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()

    def report(self):
        """Active sessions on average per state, the busiest first."""
        return {name: round(count / max(self.samples, 1), 2) for name, count in
                sorted(self.counts.items(), key=lambda item: -item[1])[:6]}


def autovacuum_workers():
    return int(scalar("postgres", """
        select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"""))


def settled(timeout=120, idle_cores=0.15):
    """Waits until the platform is at rest after the phase before: inspection caught up, no
    autovacuum worker running, and every process together below `idle_cores` of CPU for two
    seconds in a row. Otherwise what that phase left behind (the board projecting its backlog,
    autovacuum of the rows it wrote) is charged to the registrations of the next. Returns the
    seconds waited and the platform's CPU at rest, in milliseconds per second (its cost with
    nothing offered: timers, heartbeats, the relay's polling tick), or None for the CPU if it
    did not come to rest within `timeout` (the phase runs anyway and says so)."""
    started = time.monotonic()
    caught_up()
    rate = quiet_for_two_seconds(lambda: sum(cpu_seconds().values()), idle_cores,
                                 timeout - (time.monotonic() - started),
                                 also=lambda: autovacuum_workers() == 0)
    if rate is None:
        log(f"the platform did not come to rest within {timeout} s: the next phase is charged "
            "with what is still running")
    return round(time.monotonic() - started, 1), None if rate is None else round(rate * 1000, 1)


def quiet_for_two_seconds(cpu, idle_cores, timeout, also=lambda: True):
    """Waits until `cpu()` (seconds of CPU used so far) has grown by less than `idle_cores` a
    second, and `also()` held, for two seconds in a row; returns the last second's cores, or
    None after `timeout` seconds."""
    started, quiet, previous = time.monotonic(), 0, cpu()
    while time.monotonic() - started < timeout:
        time.sleep(1)
        current = cpu()
        rate = current - previous
        previous = current
        quiet = quiet + 1 if rate < idle_cores and also() else 0
        if quiet == 2:
            return rate
    return None


def end_to_end_phase(results, rate, label):
    waited, idle = settled()
    since = psql("opd_inspection", "select now()")
    before = registered()
    cpu_before, commits_before = cpu_seconds(), commit_counts()
    messages_before, batches_before = nats_messages(), batching()
    log(f"end to end at {rate}/s offered ({label}), {DURATION} s")
    with WaitSampler() as waits:
        result = wrk("register.lua", 64, DURATION, BENCH_RATE=rate)
    caught_up()
    cpu_after, commits_after = cpu_seconds(), commit_counts()
    messages_after, batches_after = nats_messages(), batching()
    sent = registered() - before
    arrived = int(scalar("opd_inspection", f"""
        select count(*) from processed_events
        where consumer = '{INSPECTION_CONSUMER}' and event_time >= '{since}'"""))
    hop = psql("opd_inspection", f"""
        select percentile_cont(array[0.5, 0.99]) within group
               (order by extract(epoch from processed_at - event_time) * 1000)
        from processed_events
        where consumer = '{INSPECTION_CONSUMER}' and event_time >= '{since}'""")
    p50, p99 = (float(x) for x in hop.strip("{}").split(","))
    # The producer's half of the hop: from the registration to the relay's stamp.
    relay = psql("opd_registration", f"""
        select percentile_cont(array[0.5, 0.99]) within group
               (order by extract(epoch from published_at - created_at) * 1000)
        from outbox where created_at >= '{since}'""")
    relay_p50, relay_p99 = (float(x) for x in relay.strip("{}").split(","))
    results["end_to_end"].append({
        "relay_p50_ms": round(relay_p50, 1), "relay_p99_ms": round(relay_p99, 1),
        "offered": label, "offered_per_s": rate, "achieved_per_s": result["throughput"],
        "http_p99_ms": result["p99_ms"], "errors": result["errors"],
        "hop_p50_ms": round(p50, 1), "hop_p99_ms": round(p99, 1),
        "registered": sent, "never_arrived": sent - arrived,
        "cpu_ms_per_registration": cpu_ms_per(cpu_before, cpu_after, sent),
        "commits_per_registration": per_registration(commits_before, commits_after, sent),
        "registration_sessions": waits.report(),
        "nats_messages_per_registration": messages_per_registration(
            messages_before, messages_after, max(sent, 1)),
        "batches": batches_between(batches_before, batches_after),
        "settled_after_s": waited, "idle_cpu_ms_per_s": idle,
    })


# The visit, step by step: each stage's BENCH_STAGE in register.lua and the service it goes to.
JOURNEY = (("register", REGISTRATION), ("inspect", INSPECTION), ("release", TREATMENT),
           ("discharge", RELEASE))
OUTBOXES = ("registration", "inspection", "treatment", "release")


def pipeline_idle():
    """Whether every event written so far is published and handled: no outbox row waiting, and
    every consumer of the patient stream, on every node, with nothing pending or unacknowledged."""
    if any(unpublished(service) for service in OUTBOXES):
        return False
    for base in NODE_MONITORS:
        jsz = monitoring(base, "jsz?consumers=true")
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                for consumer in stream.get("consumer_detail", []) or []:
                    if consumer["num_pending"] or consumer["num_ack_pending"]:
                        return False
    return True


def journey_phase(results, rate=JOURNEY_RATE, lag=3):
    """Whole visits at `rate` patients a second: registration, inspection, the release from
    treatment and the discharge, each stage a wrk of its own at that rate on its service,
    started `lag` seconds after the stage before with the same patients in the same order (so
    each request finds its patient waiting). Every patient is new, so the board's projection
    writes a visit four times: what one registration after another does not show. Charged to
    the phase: everything until the last event is handled by every consumer."""
    waited, idle = settled()
    base = RUN_BASE + 900 * 10**9  # away from the other phases' ids (phase_counter * 10^9)
    cpu_before, commits_before = cpu_seconds(), commit_counts()
    messages_before = nats_messages()
    log(f"whole visits at {rate} patients/s, four stages {lag} s apart, {DURATION} s each")
    answers = {}
    connections = 64

    def run(index, stage, url):
        time.sleep(index * lag)
        # Each stage stops after a count of patients, not a time: a stage that sent one patient
        # past the stage before would be told that patient is unknown. A thread has at most
        # its connections' requests in flight when it stops, so each stage asks for that many
        # fewer than the one before; the spare seconds let a slowed stage still reach its count.
        limit = rate * DURATION - connections * index
        answers[stage] = wrk("register.lua", connections, DURATION + lag, url=url,
                             BENCH_RATE=rate, BENCH_STAGE=stage, BENCH_ID_BASE=base,
                             BENCH_LIMIT=limit)

    runners = [threading.Thread(target=run, args=(i, stage, url))
               for i, (stage, url) in enumerate(JOURNEY)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    if len(answers) != len(JOURNEY):
        raise SystemExit(f"journey: stages without a result: {set(dict(JOURNEY)) - set(answers)}")
    started = time.monotonic()
    while not pipeline_idle():
        if time.monotonic() - started > 180:
            raise SystemExit("journey: events still pending or unacknowledged after 180 s")
        time.sleep(0.2)
    cpu_after, commits_after, messages_after = cpu_seconds(), commit_counts(), nats_messages()
    visits = answers["discharge"]["requests"] - answers["discharge"]["errors"]
    results["journey"] = {
        "offered_per_s": rate, "lag_s": lag, "visits": visits,
        "stages": {stage: {k: answers[stage][k] for k in
                           ("requests", "throughput", "p50_ms", "p99_ms", "errors")}
                   for stage, _ in JOURNEY},
        "cpu_ms_per_visit": cpu_ms_per(cpu_before, cpu_after, visits),
        "commits_per_visit": per_registration(commits_before, commits_after, visits),
        "nats_messages_per_visit": messages_per_registration(
            messages_before, messages_after, max(visits, 1)),
        "settled_after_s": waited, "idle_cpu_ms_per_s": idle,
        "quiet_after_s": round(time.monotonic() - started, 1),
    }


def drain_phase(results, backlog=20_000, replicas=1):
    """A backlog built while inspection is stopped, then handled by `replicas` instances of
    inspection sharing its durable consumer (dev.sh's inspection-2 is the second)."""
    instances = ["inspection", "inspection-2"][:replicas]
    caught_up()
    log(f"drain: {backlog} registrations while inspection is stopped ({replicas} replica(s) after)")
    for name in instances:
        dev("stop", name)
    before = registered()
    result = wrk("register.lua", 64, 300, BENCH_LIMIT=backlog,
                 done=lambda: registered() - before >= backlog)
    made = registered() - before
    deadline = time.monotonic() + 120
    while unpublished("registration") > 0:
        if time.monotonic() > deadline:
            raise SystemExit("the relay did not publish the backlog within 120 s")
        time.sleep(0.2)
    since = psql("opd_inspection", "select now()")
    log(f"drain: {' and '.join(instances)} start again")
    started = time.monotonic()
    # Side by side, so that no replica has the backlog to itself while another starts.
    starting = [subprocess.Popen([str(ROOT / "scripts" / "dev.sh"), "start", name],
                                 stdout=subprocess.DEVNULL) for name in instances]
    for process in starting:
        if process.wait() != 0:
            raise SystemExit("an inspection replica did not start")
    caught_up(timeout=600)
    wall = time.monotonic() - started
    handled, first, last = psql("opd_inspection", f"""
        select count(*), extract(epoch from min(processed_at)), extract(epoch from max(processed_at))
        from processed_events
        where consumer = '{INSPECTION_CONSUMER}' and processed_at >= '{since}'""").split("|")
    # The inbox holds each event once: as many rows as registrations means none was lost.
    if int(handled) != made:
        raise SystemExit(f"drain by {replicas} replica(s): {made} registrations, {handled} handled")
    handling = float(last) - float(first)
    results["drain" if replicas == 1 else f"drain_{replicas}_replicas"] = {
        "backlog": made, "registration_errors": result["errors"], "replicas": replicas,
        "handled": int(handled),
        "events_per_s": round(made / max(handling, 1e-3), 1),
        "seconds_from_start_command": round(wall, 1),
    }
    for name in instances[1:]:
        dev("stop", name)


def stream_figures(results):
    """What the PATIENT stream holds now, from a node's monitoring port: bytes per event, for
    the storage estimates of docs/scaling.md."""
    with urllib.request.urlopen("http://127.0.0.1:8222/jsz?streams=true", timeout=5) as answer:
        jsz = json.load(answer)
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == "PATIENT":
                state = stream["state"]
                results["stream"] = {
                    "messages": state["messages"], "bytes": state["bytes"],
                    "bytes_per_event": round(state["bytes"] / max(state["messages"], 1)),
                }


NODE_MONITORS = [f"http://127.0.0.1:{8221 + i}" for i in (1, 2, 3)]


def monitoring(base, path):
    with urllib.request.urlopen(f"{base}/{path}", timeout=5) as answer:
        return json.load(answer)


def nats_messages():
    """Messages so far, over the three nodes: from and to each client connection by name, and
    between the nodes (what each node took in from its routes)."""
    clients, routes = {}, 0
    for base in NODE_MONITORS:
        for conn in monitoring(base, "connz?limit=1000").get("connections", []):
            name = conn.get("name") or "?"
            got, sent = clients.get(name, (0, 0))
            clients[name] = (got + conn["in_msgs"], sent + conn["out_msgs"])
        routes += sum(route["in_msgs"] for route in monitoring(base, "routez").get("routes", []))
    return {"clients": clients, "routes": routes}


def metric_sum(service_url, name, durable=None):
    """The sum of a Prometheus metric's samples on a service's /metrics, optionally for one
    durable consumer."""
    with urllib.request.urlopen(f"{service_url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            if durable is None or f'durable="{durable}"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def batching():
    """What the relay and inspection's consumer have done so far, in calls and events."""
    return {
        "relay_events": metric_sum(REGISTRATION, "opd_outbox_published_total"),
        "relay_rounds": metric_sum(REGISTRATION, "opd_outbox_publish_duration_seconds_count"),
        "relay_round_s": metric_sum(REGISTRATION, "opd_outbox_publish_duration_seconds_sum"),
        "inspection_events": metric_sum(INSPECTION, "opd_consumer_messages_total",
                                        INSPECTION_CONSUMER),
        "inspection_calls": metric_sum(INSPECTION, "opd_consumer_handling_duration_seconds_count",
                                       INSPECTION_CONSUMER),
    }


def messages_per_registration(before, after, count):
    clients = {name: [round((got - before["clients"][name][0]) / count, 2),
                      round((sent - before["clients"][name][1]) / count, 2)]
               for name, (got, sent) in after["clients"].items()
               if name in before["clients"] and (got, sent) != tuple(before["clients"][name])}
    return {"clients": clients, "routes_in": round((after["routes"] - before["routes"]) / count, 2)}


def batches_between(before, after):
    d = {k: after[k] - before[k] for k in before}
    return {
        "relay_events_per_round": round(d["relay_events"] / max(d["relay_rounds"], 1), 1),
        "relay_round_ms": round(d["relay_round_s"] * 1000 / max(d["relay_rounds"], 1), 2),
        "inspection_events_per_call": round(d["inspection_events"]
                                            / max(d["inspection_calls"], 1), 1),
    }


def single_connection_phase(results):
    """Where one connection's time goes: the HTTP path alone (the home page, no database), then
    registrations with the whole pipeline at work behind them, with the board stopped, with the
    board and inspection stopped (the relay and the nodes still at work), and with the three
    NATS nodes stopped, so that only the request and its statement run (the events wait in the
    outbox and are published once NATS is back). For each registration run, the CPU per
    registration by process and the WAL flushes per registration: what the work behind the
    request takes from the same two cores and the same disk."""
    caught_up()
    log(f"single connection: the home page, then registrations with less and less of the "
        f"pipeline at work, {DURATION} s each")

    def register():
        # At rest first: the board reads its whole bucket again when it starts, and what one
        # run leaves behind is not charged to the next.
        settled()
        counts, cpu = commit_counts(), cpu_seconds()
        run = wrk("register.lua", 1, DURATION)
        count = run["requests"]
        flushes = per_registration(counts, commit_counts(), count)["wal_flushes"]
        return {"throughput": run["throughput"], "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"], "wal_flushes": flushes,
                "cpu_ms_per_registration": cpu_ms_per(cpu, cpu_seconds(), count)}

    home = wrk("home.lua", 1, DURATION)
    runs = {"home page": {k: home[k] for k in ("throughput", "p50_ms", "p99_ms")}}
    runs["register, pipeline at work"] = register()
    caught_up()
    try:
        dev("stop", "board")
        runs["register, board stopped"] = register()
        caught_up()
        dev("stop", "inspection")
        runs["register, board and inspection stopped"] = register()
    finally:
        dev("start", "inspection")
        dev("start", "board")
    settled()
    for node in ("nats-1", "nats-2", "nats-3"):
        dev("stop", node)
    runs["register, NATS stopped"] = register()
    for node in ("nats-1", "nats-2", "nats-3"):
        dev("start", node)
    caught_up()
    results["single_connection"] = runs


def pgbench_phase(results):
    log("pgbench floors on the same PostgreSQL instance")
    psql("postgres", "drop database if exists opd_bench")
    psql("postgres", "create database opd_bench")
    migrations = sorted(
        list((ROOT / "migrations" / "shared").glob("*.sql"))
        + list((ROOT / "migrations" / "registration").glob("*.sql")),
        key=lambda path: int(path.name.split("_")[0]))
    for migration in migrations:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{PG}/opd_bench",
                        "-f", str(migration)], check=True, stdout=subprocess.DEVNULL)
    run = 0
    for shape in ("essential", "registration"):
        for clients in (1, 8, 64):
            run += 1
            result = subprocess.run(
                ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)),
                 "-T", str(DURATION), "-D", "n=0", "-D", f"base={run * 10**12}", "-f",
                 str(ROOT / "scripts" / "bench" / f"pgbench-{shape}.sql"), f"{PG}/opd_bench"],
                check=True, capture_output=True, text=True)
            tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))
            results["pgbench"].append({"shape": shape, "clients": clients, "tps": round(tps, 1)})
    psql("postgres", "drop database opd_bench")


def report_housekeeping(results):
    h = results.get("housekeeping")
    if not h:
        return
    print(f"Housekeeping: {h['achieved_per_s']:.0f}/s of {h['offered_per_s']}/s offered for "
          f"{h['seconds']} s, one-minute retentions; "
          f"rows (bound {h['bound_rows']} after 90 s):")
    print(f"  {'at s':>6}" + "".join(f"{name:>18}" for name in TABLES))
    for sample in h["samples"]:
        print(f"  {sample['at_s']:>6}" + "".join(f"{sample[name]:>18}" for name in TABLES))


def durability():
    """What the database promises on commit, as the running server says (not as asked)."""
    settings = {name: psql("postgres", f"show {name}")
                for name in ("fsync", "synchronous_commit", "full_page_writes")}
    durable = settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
    return {"mode": "durable" if durable else "fsync off", **settings}


def node_processors():
    """Each NATS node's GOMAXPROCS as its process was started (scripts/dev.sh sizes it to a
    share of the cores); "default" where none was set (Go's: one per core)."""
    procs = {}
    for name in NODES:
        environ = Path(f"/proc/{pid_of(name)}/environ").read_bytes().split(b"\0")
        value = next((entry.split(b"=", 1)[1].decode() for entry in environ
                      if entry.startswith(b"GOMAXPROCS=")), "default")
        procs[name] = value
    return procs


def report(results):
    runs = {(r["name"], r["connections"]): r for r in results["runs"]}
    floors = {(p["shape"], p["clients"]): p["tps"] for p in results["pgbench"]}
    d = results["database"]
    print()
    print(f"database: {d['mode']} (fsync={d['fsync']}, synchronous_commit="
          f"{d['synchronous_commit']}, full_page_writes={d['full_page_writes']})")
    print(f"NATS nodes' GOMAXPROCS on {results['machine']['cores']} cores: "
          + ", ".join(f"{name} {value}" for name, value in results["node_gomaxprocs"].items()))
    measured = any(name.startswith("book ") for name, _ in runs)
    print("× book: " + (f"the book's sample measured in this run ({BOOK_URL})" if measured else
                        "the book's sample as measured on 2026-12-03 (BENCH_BOOK_URL measures "
                        "it in the run)"))
    print(f"{'run':<22}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p999 ms':>9}"
          f"{'errors':>8}{'× book':>8}{'× floor':>9}")
    for (name, connections), r in runs.items():
        # The sample's run beside this one; else, when the sample did not run at all, its
        # figures of 2026-12-03.
        beside = runs.get((f"book {name}", connections))
        book = (beside["throughput"] if beside else
                None if measured else BOOK.get(f"{name}_{connections}"))
        floor = floors.get(("essential", connections)) if name == "register" else None
        print(f"{name:<22}{connections:>6}{r['throughput']:>10.0f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['p999_ms']:>9.1f}{r['errors']:>8}"
              f"{(r['throughput'] / book) if book else float('nan'):>8.2f}"
              f"{(r['throughput'] / floor) if floor else float('nan'):>9.2f}")
    print()
    for e in results["end_to_end"]:
        print(f"end to end at {e['offered_per_s']}/s offered ({e['offered']}): "
              f"achieved {e['achieved_per_s']:.0f}/s, "
              f"hop p50 {e['hop_p50_ms']} ms, p99 {e['hop_p99_ms']} ms "
              f"(relay's share p50 {e['relay_p50_ms']} ms, p99 {e['relay_p99_ms']} ms), "
              f"never arrived {e['never_arrived']} of {e['registered']}, errors {e['errors']}")
        c = e["cpu_ms_per_registration"]
        print(f"  CPU per registration {c['total']} ms (" + ", ".join(
            f"{k} {v}" for k, v in c.items() if k != "total") + ")")
        if "settled_after_s" in e:  # results written before the bench waited for rest lack it
            idle = e["idle_cpu_ms_per_s"]
            print(f"  started on a platform at rest after {e['settled_after_s']} s, "
                  + (f"using {idle} ms of CPU a second with nothing offered" if idle is not None
                     else "NOT at rest: the figures include the phase before"))
        print("  commits per registration by database, and WAL flushes: " + ", ".join(
            f"{k} {v}" for k, v in e["commits_per_registration"].items()))
        print("  registration's database sessions, on average: " + ", ".join(
            f"{k} {v}" for k, v in e["registration_sessions"].items()))
        if "nats_messages_per_registration" in e:  # older results lack these
            m = e["nats_messages_per_registration"]
            print("  NATS messages per registration, in and out by client: " + ", ".join(
                f"{k} {v[0]} + {v[1]}" for k, v in sorted(m["clients"].items()))
                + f"; between the nodes {m['routes_in']}")
            b = e["batches"]
            print(f"  relay: {b['relay_events_per_round']} events a publish round of "
                  f"{b['relay_round_ms']} ms; inspection: {b['inspection_events_per_call']} "
                  f"events a handler call")
    if "journey" in results:
        j = results["journey"]
        print(f"whole visits at {j['offered_per_s']}/s offered, stages {j['lag_s']} s apart: "
              f"{j['visits']} visits discharged; " + ", ".join(
                  f"{stage} {r['throughput']:.0f}/s p99 {r['p99_ms']} ms errors {r['errors']}"
                  for stage, r in j["stages"].items()))
        c = j["cpu_ms_per_visit"]
        print(f"  CPU per visit {c['total']} ms (" + ", ".join(
            f"{k} {v}" for k, v in c.items() if k != "total")
            + f"); every event handled {j['quiet_after_s']} s after the last request")
        print("  commits per visit by database, and WAL flushes: " + ", ".join(
            f"{k} {v}" for k, v in j["commits_per_visit"].items()))
        m = j["nats_messages_per_visit"]
        print("  NATS messages per visit, in and out by client: " + ", ".join(
            f"{k} {v[0]} + {v[1]}" for k, v in sorted(m["clients"].items()))
            + f"; between the nodes {m['routes_in']}")
    for key in ("drain", "drain_2_replicas"):
        if key in results:
            d = results[key]
            print(f"drain of a {d['backlog']}-event backlog by {d['replicas']} inspection "
                  f"replica(s): {d['events_per_s']:.0f} events/s "
                  f"({d['seconds_from_start_command']} s from `dev.sh start`)")
    if results["pgbench"]:
        print("pgbench tps (same instance): " + ", ".join(
            f"{p['shape']} ×{p['clients']}: {p['tps']:.0f}" for p in results["pgbench"]))
    c = results.get("cpu_ms_per_registration")
    if c:
        print(f"CPU per registration end to end: {c['total']} ms "
              f"(" + ", ".join(f"{k} {v}" for k, v in c.items()
                               if k not in ("total", "registrations", "window")) + ")")
    if "stream" in results:
        t = results["stream"]
        print(f"PATIENT stream: {t['messages']} events, {t['bytes']} bytes, "
              f"{t['bytes_per_event']} bytes per event (one replica)")
    print("peak RSS (MB): " + ", ".join(f"{k} {v}" for k, v in results["peak_rss_mb"].items()))
    print("  resident then, own memory + mapped files (MB): " + ", ".join(
        f"{k} {v['own']} + {v['mapped_files']}" for k, v in results["rss_parts_mb"].items()))
    if "single_connection" in results:
        print("one connection:")
        for name, r in results["single_connection"].items():
            line = f"  {name}: {r['throughput']:.0f}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
            if "cpu_ms_per_registration" in r:
                cpu = r["cpu_ms_per_registration"]
                line += (f"; CPU per registration {cpu['total']} ms ("
                         + ", ".join(f"{k} {v}" for k, v in cpu.items()
                                     if k != "total" and v) + f"); WAL flushes {r['wal_flushes']}")
            print(line)
    if "board" in results:
        b = results["board"]
        print(f"board: {b['clients']} event streams on one instance, {b['offered_per_s']:.0f} "
              f"registrations/s offered for {b['seconds']} s ({b['registered']} registered): "
              f"answer to every screen p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, max "
              f"{b['max_ms']} ms; lost {b['lost']}, repeated {b['repeated']}, streams broken "
              f"{b['streams_broken']}; board RSS {b['rss_before_kb']} kB before, "
              f"{b['rss_open_kb']} kB with the streams open ({b['kb_per_client']} kB per stream)")
        print("  cores used meanwhile: " + ", ".join(f"{k} {v}" for k, v in b["cores_used"].items()))
    if "postgres_profile" in results:
        print("PostgreSQL execution time per registration, by statement (64-connection run):")
    for p in results.get("postgres_profile", []):
        print(f"  {p['ms_per_registration']:>7.4f} ms  {p['calls']:>7} calls  {p['database']:<17} {p['query']}")


BOARD_S = int(os.environ.get("BENCH_BOARD_S", "30"))


def board_phase(results, clients=1000, rate=100):
    """One board instance with `clients` event streams open while patients register at `rate`
    per second for BOARD_S seconds (opd-board-load): the time from each registration's answer
    to its event at every screen, what any screen lost or got twice, the board's memory per
    open stream, and the CPU each process used meanwhile."""
    caught_up()
    log(f"board: {clients} event streams, {rate} registrations/s for {BOARD_S} s")
    import resource
    cpu_before, tool_before = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "target" / "release" / "opd-board-load"),
         "--first-id", str(RUN_BASE + 8 * 10**9), "--clients", str(clients),
         "--rate", str(rate), "--seconds", str(BOARD_S), "--board-pid", str(pid_of("board"))],
        capture_output=True, text=True, timeout=BOARD_S + 300,
        env=dict(os.environ, OPD_BENCH_TOKEN=os.environ["OPD_TOKEN"]))
    elapsed = time.monotonic() - started
    cpu_after, tool_after = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"opd-board-load printed nothing: {done.stderr[-2000:]}")
    report = json.loads(lines[-1])
    tool = (tool_after.ru_utime + tool_after.ru_stime) - (tool_before.ru_utime + tool_before.ru_stime)
    report["cores_used"] = {k: round((cpu_after[k] - cpu_before[k]) / elapsed, 2) for k in cpu_before}
    report["cores_used"]["opd-board-load"] = round(tool / elapsed, 2)
    results["board"] = report
    if done.returncode != 0:
        log(f"board: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")


HOUSEKEEPING_S = int(os.environ.get("BENCH_HOUSEKEEPING_S", "300"))
# Short retentions, so that a run of minutes reaches the steady state a day's retention reaches
# in production: then a table holds about rate x (retention + prune interval), and no more.
# Inspection reports its one-minute inbox as shorter than the stream's max_age
# (alert="stream-settings"): true, and harmless here, where no consumer is created again.
HOUSEKEEPING_ENV = {"OPD_OUTBOX__RETENTION": "1m", "OPD_HTTP__IDEMPOTENCY_RETENTION": "1m",
                    "OPD_CONSUMER__INBOX_RETENTION": "1m", "OPD_OUTBOX__PRUNE_INTERVAL": "10s"}
TABLES = {"outbox": ("opd_registration", "outbox"),
          "idempotency_keys": ("opd_registration", "idempotency_keys"),
          "processed_events": ("opd_inspection", "processed_events")}


def housekeeping_phase(results, rate=1000):
    """Registration and inspection restarted with one-minute retentions, then registrations
    with Idempotency-Keys at `rate` for HOUSEKEEPING_S seconds; the three tables that grow with
    traffic are counted every 15 s. Each must level off at about the rate achieved x (retention
    + prune interval) instead of growing with the run. Returns why not, if it did not."""
    for name in ("registration", "inspection"):
        dev("stop", name)
        subprocess.run([str(ROOT / "scripts" / "dev.sh"), "start", name], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, **HOUSEKEEPING_ENV))
    log(f"housekeeping: {rate}/s with Idempotency-Keys for {HOUSEKEEPING_S} s, 1-minute retentions")
    samples = []
    started = time.monotonic()

    def sizes():
        return {name: int(scalar(db, f"select count(*) from {table}"))
                for name, (db, table) in TABLES.items()}

    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        wrk("register.lua", 64, HOUSEKEEPING_S, BENCH_RATE=rate, BENCH_IDEMPOTENCY=1)))
    thread.start()
    while thread.is_alive():
        samples.append({"at_s": round(time.monotonic() - started), **sizes()})
        thread.join(timeout=15)
    samples.append({"at_s": round(time.monotonic() - started), **sizes()})
    achieved = outcome.get("throughput", 0)
    # The steady state: what a retention and a prune interval of traffic leave, with room for a
    # round in progress.
    bound = int(achieved * (60 + 10) * 1.25)
    steady = [sample for sample in samples if sample["at_s"] >= 90]
    peaks = {table: max(sample[table] for sample in steady) for table in TABLES} if steady else {}
    results["housekeeping"] = {"offered_per_s": rate, "achieved_per_s": achieved,
                               "errors": outcome.get("errors"), "seconds": HOUSEKEEPING_S,
                               "bound_rows": bound, "peak_after_90_s": peaks, "samples": samples}
    # The traffic must have reached every table (half of a retention's worth at least), or a
    # flat table proves nothing. The bound follows the rate achieved, so a machine that cannot
    # keep up with the offer still tests the pruning, at its own rate.
    floor = int(achieved * 60 * 0.5)
    # Half the offer at least: a trickle would fill no table enough to test its pruning.
    if outcome.get("errors") or achieved < rate * 0.5:
        return f"housekeeping: {outcome.get('errors')} errors, {achieved}/s of {rate}/s"
    grown = {table: peak for table, peak in peaks.items() if peak > bound}
    empty = {table: peak for table, peak in peaks.items() if peak < floor}
    if not steady or grown or empty:
        return (f"housekeeping: after 90 s, rows above {bound}: {grown}; "
                f"below {floor} (traffic not reaching the table): {empty}")
    return None


PHASES = ("board", "register", "view", "end-to-end", "journey", "drain", "scale-out", "single",
          "pgbench", "without-board", "housekeeping")


def main():
    """Every phase, or those BENCH_PHASES names (comma-separated, from PHASES)."""
    chosen = [p for p in os.environ.get("BENCH_PHASES", ",".join(PHASES)).split(",") if p]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        raise SystemExit(f"unknown BENCH_PHASES {unknown}; choose from {', '.join(PHASES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cores": os.cpu_count(), "duration_s": DURATION,
                           "kernel": os.uname().release},
               "database": durability(), "node_gomaxprocs": node_processors(),
               "phases": chosen, "runs": [], "end_to_end": [], "pgbench": []}
    # First, on a board that shows only what this phase registers: the phases below leave every
    # patient they register waiting for inspection (some 150,000 in a whole run), and each of
    # the 1,000 screens would open with all of them. What the open streams take is reported
    # with the phase; the board then starts again, so that its peak memory below is the day's
    # visits' (the allocator keeps what the streams freed).
    if "board" in chosen:
        board_phase(results)
        dev("stop", "board")
        dev("start", "board")
    maximum = registration_phases(results) if "register" in chosen else None
    if "view" in chosen:
        view_phase(results)
    if "end-to-end" in chosen:
        for share in (0.5, 0.9) if maximum else ():
            end_to_end_phase(results, int(maximum * share), f"{int(share * 100)}% of the maximum")
        end_to_end_phase(results, 1000, "the target rate")
    if "journey" in chosen:
        journey_phase(results)
    if "drain" in chosen:
        drain_phase(results)
    # Two replicas of inspection sharing its durable consumer, against the one just measured
    # (docs/scaling.md).
    if "scale-out" in chosen:
        drain_phase(results, replicas=2)
    # The peak, and what each holds resident as it is read: its own memory (heap, stacks) and
    # the pages of the files it maps, most of them its binary's code, which the kernel counts
    # in RSS as it maps them in.
    memory = {name: status_mb(name, "VmHWM", "RssAnon", "RssFile") for name in SERVICES}
    results["peak_rss_mb"] = {name: m.get("VmHWM") for name, m in memory.items()}
    results["rss_parts_mb"] = {name: {"own": m.get("RssAnon"), "mapped_files": m.get("RssFile")}
                               for name, m in memory.items()}
    stream_figures(results)
    if "single" in chosen:
        single_connection_phase(results)
    if "pgbench" in chosen:
        pgbench_phase(results)
    # The paced rate again with the board stopped: what its projection costs the nodes.
    if "without-board" in chosen:
        dev("stop", "board")
        try:
            end_to_end_phase(results, 1000, "the target rate, the board stopped")
        finally:
            dev("start", "board")
    # Last: it restarts two services with other settings. A failed check is reported after
    # the table, which is printed whatever it says.
    failed = housekeeping_phase(results) if "housekeeping" in chosen else None
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    report_housekeeping(results)
    log(f"wrote {OUT / 'results.json'}")
    if failed:
        raise SystemExit(failed)


if __name__ == "__main__":
    main()
