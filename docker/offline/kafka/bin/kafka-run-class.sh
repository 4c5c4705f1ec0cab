#!/usr/bin/env bash
# Runs a Kafka class with the jars of /opt/kafka/libs (the official script's variables:
# KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS, KAFKA_LOG4J_OPTS).
heap="${KAFKA_HEAP_OPTS:--Xmx256M}"
perf="${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
log4j="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties}"
# shellcheck disable=SC2086
exec java $heap $perf $log4j ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$@"
