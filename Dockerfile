FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY strategies ./strategies
COPY loadtest ./loadtest
RUN pip install --no-cache-dir . && useradd --create-home dispatcher
USER dispatcher
EXPOSE 6066
HEALTHCHECK --interval=5s --timeout=3s --retries=12 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/v1/health', timeout=2)"
ENTRYPOINT ["dispatcher"]
CMD ["worker"]
