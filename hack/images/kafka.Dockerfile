# Stand-in for the public apache/kafka image, built by hack/images.sh only where that image
# cannot be pulled. It honours the contract the chart relies on:
#   - every KAFKA_* environment variable becomes a broker property (KAFKA_ stripped, lower
#     case, '_' -> '.', '__' -> '_', '___' -> '-'), except the JVM settings the start
#     scripts read (KAFKA_HEAP_OPTS, KAFKA_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, ...);
#   - CLUSTER_ID formats the storage on the first start, an already formatted one is kept;
#   - /opt/kafka with the tools' scripts in /opt/kafka/bin, user appuser with UID 1000,
#     ports 9092 and 9093.
# The broker jars are the ones the local stack uses (hack/kafka/pom.xml, same version).
ARG DEBIAN_RELEASE=trixie
FROM debian:${DEBIAN_RELEASE}-slim
# hadolint ignore=DL3008
# man1: the JRE's update-alternatives links its man page there, and slim images may lack it.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-21-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --home-dir /home/appuser --create-home appuser
COPY libs/ /opt/kafka/libs/
COPY log4j2.properties log4j2-tools.properties /opt/kafka/config/
COPY bin/ /opt/kafka/bin/
COPY kafka-run /etc/kafka/docker/run
RUN chmod 0755 /etc/kafka/docker/run \
 && mkdir -p /var/lib/kafka/data \
 && chown -R appuser:appuser /opt/kafka /var/lib/kafka
USER appuser
WORKDIR /opt/kafka
EXPOSE 9092 9093
ENTRYPOINT ["/etc/kafka/docker/run"]
