#!/usr/bin/env bash
# Runs the JMH benchmarks of dive.bench with JDK 25 (found like ./dive finds it), building the jar first
# when it is missing or stale. All arguments go to JMH, e.g.
#   benchmarks/run-jmh.sh GemmBenchmark -p shape=1024x1024x1024 -f 1 -wi 3 -i 5 -w 1s -r 1s -rf json -rff gemm.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAR="$ROOT/target/dive.jar"

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -1
}
find_jdk() {
  local c
  for c in "${DIVE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* \
           /usr/lib/jvm/java-25* /usr/lib/jvm/jdk-25* /opt/java/openjdk /opt/jdk-25*; do
    [ -n "$c" ] && [ -x "$c/bin/java" ] || continue
    local v; v="$(java_major "$c/bin/java")"
    if [ -n "$v" ] && [ "$v" -ge 25 ]; then echo "$c"; return 0; fi
  done
  return 1
}
JDK="$(find_jdk)" || { echo "run-jmh.sh: no JDK 25 found (set JAVA_HOME or DIVE_JAVA_HOME to one)" >&2; exit 1; }

if [ ! -f "$JAR" ] || [ -n "$(find "$ROOT/pom.xml" "$ROOT/src/main" "$ROOT/benchmarks/src" -newer "$JAR" -type f -print -quit 2>/dev/null)" ]; then
  echo "run-jmh.sh: building target/dive.jar ..." >&2
  "$ROOT/dive" build
fi

FLAGS="--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"
# forks must get JDK 25 too (-jvm), and a failing benchmark must fail the run (-foe true)
exec "$JDK/bin/java" $FLAGS -cp "$JAR" org.openjdk.jmh.Main -foe true -jvm "$JDK/bin/java" -jvmArgsAppend "$FLAGS" "$@"
