# The image the README's Compose example builds: idops from this checkout (bot/ and connectors/ only,
# as the wheel carries them), serving on 8080. Secrets come from the environment, config from a mount.
FROM python:3.11-slim
COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src
USER nobody
EXPOSE 8080
CMD ["idops", "serve", "--config", "/etc/idops/idops.toml", "--host", "0.0.0.0", "--port", "8080"]
