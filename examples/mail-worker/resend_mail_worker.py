#!/usr/bin/python3
"""The reference mail worker of ngx_http_resend_confirmation_module.

Reads the records the module writes to its Redis stream(s) through a
consumer group and sends one confirmation-resend mail per request_id over
SMTP. Debian 12: apt-get install python3-redis (SMTP is the standard
library's smtplib).

Delivery is at least once, with deduplication by request_id:

  1. claim:  SET <prefix>:sent:<request_id> "sending ..." NX PX <claim-ttl>
             taken: go on; "sent"/"refused": a duplicate, XACK it;
             "sending" (another consumer has this request in hand): leave
             the entry pending, XAUTOCLAIM brings it back after --idle
  2. send:   the mail, over SMTP
  3. mark:   SET <prefix>:sent:<request_id> sent EX <dedup-ttl>
  4. XACK

Nothing is acknowledged before the SMTP server accepted the mail (or the
request_id is known to be done), so a crash anywhere loses no mail: the
entry stays pending and is read again (by this consumer's name on its next
start, or by any consumer's XAUTOCLAIM after --idle). The one window that
sends a mail twice is between the SMTP server's acceptance and the mark
(one Redis round trip, or Redis down then): the mail is sent again once the
claim expires. The README's section "The mail worker" says why this is the
right trade-off.
"""

import argparse
import email.message
import email.utils
import logging
import os
import re
import signal
import smtplib
import socket
import string
import sys
import time
import uuid

import redis

log = logging.getLogger("resend-mail-worker")

DEFAULT_SUBJECT = "Confirm your account"
DEFAULT_BODY = """\
Hello,

We were asked to send the confirmation message of the account registered
with $email again.

Open the confirmation link of the application to confirm your account.
If you did not ask for this, you can ignore this message.

(Reference: $request_id)
"""

# Only for the tests (t/026-mail-worker.t): "POINT:N" makes the worker stand
# still, for good, at POINT of the N-th mail it handles (claimed: before the
# SMTP transaction; sent: after the SMTP server accepted it, before the mark;
# marked: before its XACK), so that a test can kill it exactly there. Never
# set it in production: a worker that reaches the point does nothing more.
TEST_PAUSE_ENV = "RESEND_MAIL_WORKER_TEST_PAUSE"
TEST_PAUSE_POINTS = ("claimed", "sent", "marked")

# Compare-and-delete of a claim: only the consumer that holds it gives it up.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# The module's email policy (README, "Email policy"), checked again before an
# address goes into a mail header and an SMTP envelope.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL_PART = re.compile(rf"{ATEXT}(?:\.{ATEXT})*")
LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
REQUEST_ID = re.compile(r"[!-~]{1,128}")
SILENCED_STREAM = re.compile(r":silenced:\{")


def valid_address(address):
    if len(address) > 254 or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if len(local) > 64 or not LOCAL_PART.fullmatch(local):
        return False
    labels = domain.split(".")
    return (len(labels) >= 2 and all(LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit())


class Permanent(Exception):
    """The SMTP server refused this mail for good (5xx for its recipient)."""


class Transient(Exception):
    """The mail could not be handed over now; it may be tried again."""


class Worker:
    def __init__(self, config, client):
        self.config = config
        self.redis = client
        self.release = client.register_script(RELEASE_SCRIPT)
        self.stopping = False
        self.streams = []        # the stream keys read, each with the group
        self.backlog = {}        # stream -> ID after which this consumer's own pending entries are read
        self.smtp = None
        self.smtp_backoff = 0.0
        self.next_scan = 0.0
        self.next_claim = 0.0
        self.subject = string.Template(config.subject)
        self.body = string.Template(config.body)
        self.domain = email.utils.parseaddr(config.sender)[1].rpartition("@")[2] or "localhost"
        self.pause_at = None
        self.handled = {point: 0 for point in TEST_PAUSE_POINTS}
        hook = os.environ.get(TEST_PAUSE_ENV)
        if hook:
            point, _, n = hook.partition(":")
            if point not in TEST_PAUSE_POINTS or not n.isdigit():
                raise SystemExit(f"{TEST_PAUSE_ENV}={hook}: want POINT:N, POINT one of {TEST_PAUSE_POINTS}")
            self.pause_at = (point, int(n))
            log.warning("%s is set: a test hook, never for production", TEST_PAUSE_ENV)

    # -- the loop ---------------------------------------------------------

    def stop(self, signum, _frame):
        if not self.stopping:
            log.info("%s: stopping after the current mail", signal.Signals(signum).name)
        self.stopping = True

    def run(self):
        backoff = 0.0
        while not self.stopping:
            try:
                self.step()
                backoff = 0.0
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.ResponseError) as e:
                if str(e).startswith("NOGROUP"):
                    log.warning("%s: making the groups again", e)
                    self.next_scan = 0.0      # a stream deleted with its group
                    continue
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning("redis: %s; trying again in %.1f s", e, backoff)
                self.sleep(backoff)
        self.close_smtp()
        log.info("stopped")

    def step(self):
        now = time.monotonic()
        if now >= self.next_scan:
            self.find_streams()
            self.next_scan = now + self.config.rescan
        if not self.streams:
            self.sleep(min(self.config.block / 1000, self.config.rescan))
            return
        if now >= self.next_claim:
            for stream in self.streams:
                self.autoclaim(stream)
            self.next_claim = time.monotonic() + min(max(self.config.idle / 2000, 0.5), 30.0)
        for stream in [s for s in self.streams if s in self.backlog]:
            # This consumer's own pending entries (left by its previous run,
            # under the same name), read once from the start of its list.
            replies = self.read({stream: self.backlog[stream]}, block=None)
            entries = replies[0][1] if replies else []
            if not entries:
                del self.backlog[stream]
                continue
            self.backlog[stream] = entries[-1][0]
            self.handle_all(stream, entries)
            return
        replies = self.read({stream: ">" for stream in self.streams}, block=self.config.block)
        if not replies:
            self.close_smtp()         # idle: do not hold the SMTP connection
        for stream, entries in replies or []:
            self.handle_all(stream, entries)

    def read(self, streams, block):
        return self.redis.xreadgroup(self.config.group, self.config.consumer, streams,
                                     count=self.config.count, block=block)

    def find_streams(self):
        names = list(self.config.streams)
        if self.config.stream_pattern:
            found = self.redis.scan_iter(match=self.config.stream_pattern, count=1000, _type="stream")
            names += sorted(set(found) - set(names))
        names = [name for name in names if not SILENCED_STREAM.search(name)]
        for name in names:
            self.make_group(name)
            if name not in self.streams:
                log.info("reading stream %s as %s of group %s", name, self.config.consumer, self.config.group)
                self.streams.append(name)
                self.backlog[name] = "0"

    def make_group(self, stream):
        try:
            self.redis.xgroup_create(stream, self.config.group, id=self.config.group_start, mkstream=True)
            log.info("group %s made on stream %s", self.config.group, stream)
        except redis.exceptions.ResponseError as e:
            if not str(e).startswith("BUSYGROUP"):
                raise

    def autoclaim(self, stream):
        """Takes over entries pending longer than --idle: left by a consumer
        that died, or by a send that failed for now (this consumer's too)."""
        cursor = "0-0"
        while not self.stopping:
            reply = self.redis.xautoclaim(stream, self.config.group, self.config.consumer,
                                          self.config.idle, cursor, count=self.config.count)
            cursor, entries = reply[0], reply[1]
            for gone in reply[2] if len(reply) > 2 else []:
                log.error("stream %s entry %s was trimmed (MAXLEN) before it was mailed: lost", stream, gone)
            if entries:
                log.info("stream %s: %d entries idle for %d ms taken over", stream, len(entries),
                         self.config.idle)
                self.handle_all(stream, entries)
            if cursor == "0-0":
                return

    def handle_all(self, stream, entries):
        for entry_id, fields in entries:
            if self.stopping:
                return                # the rest stay pending, for the next run
            self.handle(stream, entry_id, fields)

    # -- one record -------------------------------------------------------

    def handle(self, stream, entry_id, fields):
        request_id = fields.get("request_id", "")
        address = fields.get("email", "")
        where = f"stream {stream} entry {entry_id}"
        if not fields:
            return self.ack(stream, entry_id, logging.ERROR, "%s was trimmed (MAXLEN) before it was mailed: lost",
                            where)
        if not REQUEST_ID.fullmatch(request_id) or not valid_address(address):
            # Not a record of the module: nothing could ever mail it.
            return self.ack(stream, entry_id, logging.ERROR,
                            "%s has no request_id or no valid email: acknowledged, not mailed", where)
        key = f"{self.config.key_prefix}:sent:{request_id}"
        where += f" request_id={request_id}"
        state, token = self.claim(key)
        if state == "done":
            return self.ack(stream, entry_id, logging.INFO, "%s: already mailed (a duplicate): acknowledged",
                            where)
        if state == "busy":
            log.info("%s: being mailed by another consumer: left pending", where)
            return None
        self.test_pause("claimed", where)
        started = time.monotonic()
        try:
            self.send(address, request_id, fields)
        except Permanent as e:
            self.mark(key, "refused")
            return self.ack(stream, entry_id, logging.ERROR,
                            "%s: refused by the SMTP server for good (%s): acknowledged, not mailed", where, e)
        except Transient as e:
            self.release(keys=[key], args=[token])
            log.warning("%s: not sent (%s): left pending, tried again after %d ms", where, e,
                        self.config.idle)
            return self.smtp_failed()
        took = time.monotonic() - started
        if took * 1000 > self.config.claim_ttl:
            log.warning("%s: the send took %.1f s, longer than --claim-ttl: another copy may "
                        "have been mailed meanwhile", where, took)
        self.smtp_backoff = 0.0
        self.test_pause("sent", where)
        self.mark(key, "sent")
        self.test_pause("marked", where)
        return self.ack(stream, entry_id, logging.INFO, "%s: mailed", where)

    def claim(self, key):
        token = f"sending {self.config.consumer} {uuid.uuid4().hex}"
        for _ in range(3):
            if self.redis.set(key, token, nx=True, px=self.config.claim_ttl):
                return "claimed", token
            value = self.redis.get(key)
            if value is not None:
                return ("busy" if value.startswith("sending ") else "done"), None
            # expired between the two commands: try again
        return "busy", None

    def mark(self, key, outcome):
        """Records for --dedup-ttl that the request is done. Tried until it
        works: the mail is out, and only this stops it going out again."""
        backoff = 0.1
        while True:
            try:
                self.redis.set(key, outcome, ex=self.config.dedup_ttl)
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
                log.warning("redis: %s; marking %s again in %.1f s", e, key, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def ack(self, stream, entry_id, level=None, message=None, *args):
        """XACK, then the entry's log line: a line says what is done."""
        self.redis.xack(stream, self.config.group, entry_id)
        if message:
            log.log(level, message, *args)

    # -- the mail ---------------------------------------------------------

    def compose(self, address, request_id, fields):
        values = {name: value for name, value in fields.items() if name.isidentifier()}
        try:
            received = int(fields.get("received_at", ""))
            values["received"] = email.utils.formatdate(received / 1000, usegmt=True)
        except ValueError:
            values["received"] = ""
        try:
            msg = email.message.EmailMessage()
            msg["From"] = self.config.sender
            msg["To"] = address
            msg["Subject"] = self.subject.safe_substitute(values)
            msg["Date"] = email.utils.formatdate(usegmt=True)
            # The same Message-ID for every copy of one request: should the
            # mail go out twice, mail systems can tell it is one message.
            msg["Message-ID"] = f"<resend-confirmation.{request_id}@{self.domain}>"
            msg["Auto-Submitted"] = "auto-generated"
            msg["X-Resend-Confirmation-Request-Id"] = request_id
            msg.set_content(self.body.safe_substitute(values))
        except ValueError as e:       # a field with a line break in a header
            raise Permanent(f"cannot be composed: {e}") from e
        return msg

    def send(self, address, request_id, fields):
        msg = self.compose(address, request_id, fields)
        smtp = self.smtp_connection()
        try:
            smtp.send_message(msg, from_addr=self.config.envelope_from, to_addrs=[address])
        except smtplib.SMTPRecipientsRefused as e:
            self.close_smtp()
            code, text = next(iter(e.recipients.values()))
            reason = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
            raise (Permanent if code >= 500 else Transient)(reason) from e
        except (smtplib.SMTPException, OSError) as e:
            # A refused sender or message (even 5xx: the same for every mail,
            # a fault of this side), a lost connection, a timeout.
            self.close_smtp()
            raise Transient(f"{type(e).__name__}: {e}") from e

    def smtp_connection(self):
        if self.smtp is not None:
            try:
                if self.smtp.noop()[0] == 250:
                    return self.smtp
            except (smtplib.SMTPException, OSError):
                pass
            self.close_smtp()
        try:
            self.smtp = smtplib.SMTP(self.config.smtp_host, self.config.smtp_port,
                                     timeout=self.config.smtp_timeout)
        except (smtplib.SMTPException, OSError) as e:
            raise Transient(f"cannot connect to {self.config.smtp_host}:{self.config.smtp_port}: {e}") from e
        return self.smtp

    def close_smtp(self):
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None

    def smtp_failed(self):
        self.smtp_backoff = min(max(self.smtp_backoff * 2, 1.0), 30.0)
        self.sleep(self.smtp_backoff)

    # -- helpers ----------------------------------------------------------

    def sleep(self, seconds):
        until = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < until:
            time.sleep(min(0.05, max(until - time.monotonic(), 0)))

    def test_pause(self, point, where):
        self.handled[point] += 1
        if self.pause_at == (point, self.handled[point]):
            log.warning("test pause: %s %s", point, where)
            while True:
                time.sleep(3600)


def options(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Sends one confirmation-resend mail per request recorded by "
                    "ngx_http_resend_confirmation_module. Every option can also be "
                    "given in the environment variable named in its help.")
    p.add_argument("--redis-url", default=env("RESEND_MAIL_REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="redis://[user:password@]host:port/db, rediss://..., unix:///path?db=N "
                        "(RESEND_MAIL_REDIS_URL)")
    p.add_argument("--stream", dest="streams", action="append",
                   help="a stream key to read; repeat for several (RESEND_MAIL_STREAMS, "
                        "comma-separated; default resend_confirmation)")
    p.add_argument("--stream-pattern", default=env("RESEND_MAIL_STREAM_PATTERN"),
                   help="also read every stream whose key matches this glob, looked for every "
                        "--rescan seconds (RESEND_MAIL_STREAM_PATTERN)")
    p.add_argument("--rescan", type=float, default=float(env("RESEND_MAIL_RESCAN", "10")),
                   help="seconds between looks for streams (RESEND_MAIL_RESCAN)")
    p.add_argument("--group", default=env("RESEND_MAIL_GROUP", "mailers"),
                   help="the consumer group, one on each stream (RESEND_MAIL_GROUP)")
    p.add_argument("--group-start", default=env("RESEND_MAIL_GROUP_START", "0"),
                   help="where a group made by this worker starts: 0, the whole stream (default), "
                        "or $, only what comes next (RESEND_MAIL_GROUP_START)")
    p.add_argument("--consumer", default=env("RESEND_MAIL_CONSUMER", socket.gethostname()),
                   help="this worker's name in the group, the same across its restarts and "
                        "another for each worker (RESEND_MAIL_CONSUMER; default the host name)")
    p.add_argument("--count", type=int, default=int(env("RESEND_MAIL_COUNT", "10")),
                   help="entries read at once (RESEND_MAIL_COUNT)")
    p.add_argument("--block", type=int, default=int(env("RESEND_MAIL_BLOCK", "2000")),
                   help="ms a read waits for new entries; also how long a stop may wait "
                        "when idle (RESEND_MAIL_BLOCK)")
    p.add_argument("--idle", type=int, default=int(env("RESEND_MAIL_IDLE", "60000")),
                   help="ms an entry stays pending before XAUTOCLAIM takes it over "
                        "(RESEND_MAIL_IDLE)")
    p.add_argument("--claim-ttl", type=int, default=int(env("RESEND_MAIL_CLAIM_TTL", "120000")),
                   help="ms a claim on a request_id lasts: longer than a send can take "
                        "(RESEND_MAIL_CLAIM_TTL)")
    p.add_argument("--dedup-ttl", type=int, default=int(env("RESEND_MAIL_DEDUP_TTL", "604800")),
                   help="seconds a request_id is remembered as mailed: longer than the longest "
                        "outage a spool can replay after (RESEND_MAIL_DEDUP_TTL)")
    p.add_argument("--key-prefix", default=env("RESEND_MAIL_KEY_PREFIX", "resend_confirmation"),
                   help="dedup keys are PREFIX:sent:<request_id> (RESEND_MAIL_KEY_PREFIX)")
    p.add_argument("--smtp-host", default=env("RESEND_MAIL_SMTP_HOST", "localhost"),
                   help="(RESEND_MAIL_SMTP_HOST)")
    p.add_argument("--smtp-port", type=int, default=int(env("RESEND_MAIL_SMTP_PORT", "25")),
                   help="(RESEND_MAIL_SMTP_PORT)")
    p.add_argument("--smtp-timeout", type=float, default=float(env("RESEND_MAIL_SMTP_TIMEOUT", "20")),
                   help="seconds for each SMTP step (RESEND_MAIL_SMTP_TIMEOUT)")
    p.add_argument("--from", dest="sender", default=env("RESEND_MAIL_FROM"),
                   help='the From header, "Name <address>" or an address; required (RESEND_MAIL_FROM)')
    p.add_argument("--envelope-from", default=env("RESEND_MAIL_ENVELOPE_FROM"),
                   help="the SMTP MAIL FROM (RESEND_MAIL_ENVELOPE_FROM; default the From address)")
    p.add_argument("--subject", default=env("RESEND_MAIL_SUBJECT", DEFAULT_SUBJECT),
                   help="the Subject, a template as the body (RESEND_MAIL_SUBJECT)")
    p.add_argument("--template", default=env("RESEND_MAIL_TEMPLATE"),
                   help="a file with the body: $email, $request_id, $ip, $received_at, $received "
                        "(a date) and every other field by its name (RESEND_MAIL_TEMPLATE)")
    p.add_argument("--log-level", default=env("RESEND_MAIL_LOG_LEVEL", "INFO"),
                   help="(RESEND_MAIL_LOG_LEVEL)")
    config = p.parse_args(argv)
    if config.streams is None:
        listed = env("RESEND_MAIL_STREAMS")
        config.streams = ([s for s in listed.split(",") if s] if listed
                          else [] if config.stream_pattern else ["resend_confirmation"])
    if not config.sender:
        p.error("--from (or RESEND_MAIL_FROM) is required")
    config.envelope_from = config.envelope_from or email.utils.parseaddr(config.sender)[1]
    if config.template:
        with open(config.template, encoding="utf-8") as f:
            config.body = f.read()
    else:
        config.body = DEFAULT_BODY
    for name in ("count", "block", "idle", "claim_ttl", "dedup_ttl"):
        if getattr(config, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return config


def main(argv=None):
    config = options(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    client = redis.Redis.from_url(config.redis_url, decode_responses=True,
                                  socket_timeout=config.block / 1000 + 10, socket_connect_timeout=5)
    worker = Worker(config, client)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
