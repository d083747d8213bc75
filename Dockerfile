# modbot daemon image: slim Python, non-root, configuration and data as volumes.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY modbot ./modbot
COPY config ./config
COPY migrations ./migrations
# The postgres extra brings the PostgreSQL driver, for [database] url = "postgresql+psycopg://...".
# constraints.txt pins the versions the test suite ran with.
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt ".[postgres]"

FROM python:3.11-slim
RUN groupadd --system modbot && useradd --system --gid modbot --home-dir /var/lib/modbot \
        --shell /usr/sbin/nologin modbot \
    && mkdir -p /etc/modbot /var/lib/modbot && chown modbot:modbot /var/lib/modbot \
    && chmod 0700 /var/lib/modbot
COPY --from=build /install /usr/local
USER modbot
WORKDIR /var/lib/modbot
# /etc/modbot: modbot.toml, directory.csv, ca.pem, templates (read-only).
# /var/lib/modbot: the SQLite database (owner-only).
VOLUME ["/etc/modbot", "/var/lib/modbot"]
ENV MODBOT_CONFIG=/etc/modbot/modbot.toml \
    PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
# Healthy while a poll succeeded within three poll intervals (modbot health reads the database).
# The start period covers the first poll, which may look back over several days of mail.
HEALTHCHECK --interval=60s --timeout=20s --start-period=5m --retries=3 CMD ["modbot", "health"]
ENTRYPOINT ["modbot"]
CMD ["run"]
