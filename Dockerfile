# The dispatcher image. `docker build .` gives the worker (the last stage); docker-compose.yml also
# builds the `loadtest` stage for locust under its `loadtest` profile.
# Every compiled dependency ships cp311 manylinux wheels, so the slim image needs no compiler.
FROM python:3.11-slim AS app
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY strategies ./strategies
COPY loadtest ./loadtest
RUN pip install --no-cache-dir /src \
 && useradd --create-home --uid 10001 --user-group dispatcher

# locust with the project's dev extras (locust, confluent-kafka for the Kafka producer users, orjson).
# docker-compose.yml mounts ./loadtest at /mnt/locust/loadtest and puts /mnt/locust first on the path,
# so the live files win over the copy installed above. The workers want a comma-separated token list;
# locust sends one token: DISPATCHER_API_TOKEN, else the first of DISPATCHER_API_TOKENS.
FROM app AS loadtest
RUN pip install --no-cache-dir '/src[dev]'
USER dispatcher
WORKDIR /home/dispatcher
EXPOSE 8089
ENTRYPOINT ["sh", "-c", "export DISPATCHER_API_TOKEN=\"${DISPATCHER_API_TOKEN:-${DISPATCHER_API_TOKENS%%,*}}\"; exec locust \"$@\"", "locust"]

# The worker: `dispatcher worker` by default; any other subcommand can be given instead (`api` for
# an api process).
FROM app AS worker
USER dispatcher
WORKDIR /home/dispatcher
EXPOSE 6066
# 200 only once the worker consumes and redis answers, or an api process's producer is up and redis
# answers (503 before, which urlopen raises on).
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=12 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health' % os.environ.get('DISPATCHER_HTTP_PORT', '6066'), timeout=2)"
ENTRYPOINT ["dispatcher"]
CMD ["worker"]
