"""What the tests and the benchmark share: real servers on loopback, faults, mail and records.

Imported as ``support.servers``, ``support.faults`` and so on. pytest finds it through
``pythonpath = ["tests"]`` in pyproject.toml; ``bench/`` puts ``tests/`` on its path once, in
``bench/run.py`` and ``bench/soak.py``.

- ``servers``: Dovecot, aiosmtpd, silent ports and an OAuth2 provider (``conftest.py`` makes
  them fixtures); ``pgserver``: PostgreSQL; ``ldapserver``: OpenLDAP; ``mta``: a college's
  Postfix with OpenDKIM, OpenDMARC and dnsmasq. ``servers.Listener`` is the loopback port
  under the relays and proxies.
- ``configs``: configuration files and in-memory accounts for tests that need one but do not
  test it, and a poll context that trusts the test CA.
- ``faults`` and ``trials``: the reliability suite's broken servers, configurations and whole
  trials (``bench/soak.py`` runs them at full size); ``poll_driver``: one poll in a child process.
- ``linkedin_mail``, ``pipeline_mail``, ``wrappers``: mail as LinkedIn, the pipeline and link
  gateways write it; ``rows``: store records.
- ``pipeline_fixtures``: the script that rewrites ``tests/data/pipeline/``.
"""
