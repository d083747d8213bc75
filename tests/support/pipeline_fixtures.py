"""Write tests/data/pipeline/: the header blocks the real pipeline gives each message.

    PYTHONPATH=tests .venv/bin/python -m support.pipeline_fixtures [OUT_DIR]     (as root)

Starts the pipeline of support/mta.py, sends every message of support/pipeline_mail.py through
both variants to ``morgan.lee@college.test``, reads each back from Dovecot over IMAP and writes
its header block, byte for byte but for line ends (LF here, as every fixture in tests/data), to
``OUT_DIR/<variant>/<case>.headers``. Keys are made afresh on every run, so signatures, queue
ids and dates change from run to run; what each server wrote where does not, and
tests/gate/test_pipeline_postfix.py checks that against the live pipeline.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import trustme

from modbot.tls import client_context
from support import mta, servers
from support.pipeline_mail import Keys, cases

OUT = Path(__file__).parents[1] / "data" / "pipeline"
MAILBOX = "morgan.lee"


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as scratch:
        ca_file = Path(scratch) / "ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        keys = Keys.generate()
        pipeline = mta.start_pipeline(ca.issue_cert(*servers.CERT_NAMES),
                                      client_context(ca_file), keys.zone())
        try:
            user = pipeline.dovecot.add_user(MAILBOX)
            where: dict[str, Path] = {}
            for variant in mta.VARIANTS:
                for case in cases(keys):
                    queue_id = pipeline.send(case.raw, variant=variant, sender=case.sender,
                                             recipient=f"{MAILBOX}@{mta.MAIL_DOMAIN}",
                                             peer=case.peer)
                    where[queue_id] = out / variant / f"{case.name}.headers"
            pipeline.wait_delivered(list(where))
            for raw in user.messages("INBOX"):
                head = raw.partition(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n"
                found = re.search(rb"by " + re.escape(mta.MX.encode())
                                  + rb" \(Postfix\) with ESMTP id (\w+)", head)
                assert found is not None, "a delivered message lacks the MX's Received line"
                path = where.pop(found.group(1).decode())
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(head)
                print(path)
            assert not where, f"not found in the mailbox: {sorted(where)}"
        finally:
            pipeline.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
