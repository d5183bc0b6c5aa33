#!/usr/bin/env bash
# Prepares target/gpu-bundle/: everything benchmarks/gpu/run.sh needs on a GPU machine that has no JDK, no Maven
# and no network. Run it here (JDK 25 + Maven); the GPU machine then runs `bash benchmarks/gpu/run.sh` from a copy of
# the working tree with target/gpu-bundle carried along.
#
#   jdk.tar.xz     a jlink image of JDK 25 (only the modules the engine, JMH and the JUnit console need), tar + xz
#   classes/       compiled main + bindings + benchmark classes (code only, plus JMH's META-INF/BenchmarkList)
#   test-classes/  compiled test classes (code only; run.sh reads resources from src/*/resources in the tree)
#   lib/           the runtime dependency jars and junit-platform-console-standalone (fetched by Maven)
#   BUNDLE.txt     what was bundled, from which commit, and the sizes
#
# The jlink image is made without its own compression (--compress zip-0) and then packed with xz: 16 MB instead of
# 25 MB for zip-9 inside + xz, because xz cannot squeeze already-zipped resources. The working tree plus the carried
# bundle must stay under the 64 MiB that travel to the GPU machine: this script measures both and fails when they do not.
# DIVE_GPU_EXTRA_MODULES=java.desktop adds modules (java.desktop is only needed by the report charts, +6 MB).
# --reuse-jdk keeps the jdk.tar.xz of the existing bundle when it has the same modules (refreshes only classes and
# jars: seconds instead of minutes after a code change).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUNDLE="$ROOT/target/gpu-bundle"
STAGE="$ROOT/target/gpu-bundle.tmp"
LIMIT_BYTES=$((64 * 1024 * 1024))
REUSE_JDK=0
for a in "$@"; do
  case "$a" in
    --reuse-jdk) REUSE_JDK=1 ;;
    *) echo "prepare.sh: unknown argument '$a' (expected --reuse-jdk)" >&2; exit 2 ;;
  esac
done

die() { echo "prepare.sh: $*" >&2; exit 1; }

java_major() { "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -1; }
JDK=""
for c in "${DIVE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* /usr/lib/jvm/java-25* /usr/lib/jvm/jdk-25*; do
  [ -n "$c" ] && [ -x "$c/bin/jlink" ] || continue
  v="$(java_major "$c/bin/java")"
  if [ -n "$v" ] && [ "$v" -ge 25 ]; then JDK="$c"; break; fi
done
[ -n "$JDK" ] || die "no JDK 25 with jlink found (set JAVA_HOME to one)"
command -v mvn >/dev/null || die "Maven (mvn) not found on PATH"
command -v xz >/dev/null || die "xz not found (apt-get install xz-utils)"
export JAVA_HOME="$JDK" PATH="$JDK/bin:$PATH"
export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow"
mvn_q() { mvn -B -q -Dstyle.color=never "$@"; }

JUNIT_VERSION="$(sed -n 's:.*<junit.version>\(5\.[0-9.]*\)</junit.version>.*:\1:p' pom.xml | head -1)"
[ -n "$JUNIT_VERSION" ] || die "pom.xml: no <junit.version>5.x.y</junit.version> property"
PLATFORM_VERSION="1.${JUNIT_VERSION#5.}"   # JUnit 5.14.1 ships with JUnit Platform 1.14.1
MODULES="java.base,jdk.incubator.vector,java.logging,java.management,jdk.unsupported,java.xml,java.sql,java.net.http,jdk.httpserver${DIVE_GPU_EXTRA_MODULES:+,$DIVE_GPU_EXTRA_MODULES}"

rm -rf "$STAGE"
mkdir -p "$STAGE/lib" "$STAGE/classes" "$STAGE/test-classes"

echo "prepare.sh: compiling main and test classes (JDK $JDK)"
mvn_q test-compile
[ -f target/classes/META-INF/BenchmarkList ] || die "target/classes/META-INF/BenchmarkList missing: JMH's annotation processor did not run"

echo "prepare.sh: dependency jars and junit-platform-console-standalone $PLATFORM_VERSION"
mvn_q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$STAGE/lib"
mvn_q dependency:copy -Dartifact="org.junit.platform:junit-platform-console-standalone:$PLATFORM_VERSION" -DoutputDirectory="$STAGE/lib"

echo "prepare.sh: class files (resources stay in src/*/resources of the tree)"
(cd target/classes && find . \( -name '*.class' -o -path ./META-INF/BenchmarkList -o -path ./META-INF/CompilerHints \) -print0 \
  | xargs -0 cp --parents -t "$STAGE/classes")
(cd target/test-classes && find . -name '*.class' -print0 | xargs -0 cp --parents -t "$STAGE/test-classes")

if [ "$REUSE_JDK" = 1 ] && [ -f "$BUNDLE/jdk.tar.xz" ] && grep -qxF "jlink modules: $MODULES" "$BUNDLE/BUNDLE.txt" 2>/dev/null; then
  echo "prepare.sh: reusing $BUNDLE/jdk.tar.xz ($MODULES)"
  cp "$BUNDLE/jdk.tar.xz" "$STAGE/jdk.tar.xz"
else
  echo "prepare.sh: jlink ($MODULES) and xz"
  JL="$(mktemp -d)"
  trap 'rm -rf "$JL"' EXIT
  jlink --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages --compress zip-0 --output "$JL/jdk"
  "$JL/jdk/bin/java" --add-modules jdk.incubator.vector -version 2>&1 | grep -q 'version "25' || die "the jlink image does not start"
  tar -C "$JL" -cf - jdk | xz -6 -T2 > "$STAGE/jdk.tar.xz"
fi

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo " (with uncommitted changes)" || true)"
{
  echo "dive GPU bundle, made $(date -u +%Y-%m-%dT%H:%M:%SZ) from commit $COMMIT$DIRTY"
  echo "JDK: $("$JDK/bin/java" -version 2>&1 | head -1)"
  echo "jlink modules: $MODULES"
  echo "JUnit Platform console: $PLATFORM_VERSION"
  echo "jars: $(cd "$STAGE/lib" && ls | tr '\n' ' ')"
} > "$STAGE/BUNDLE.txt"

rm -rf "$BUNDLE"
mv "$STAGE" "$BUNDLE"

# sizes: what travels to the GPU machine = tracked files + untracked files git does not ignore + the carried bundle
bundle_bytes=$(du -sb "$BUNDLE" | cut -f1)
tree_bytes=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((bundle_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "prepare.sh: bundle $(mib "$bundle_bytes") (jdk.tar.xz $(mib "$(stat -c %s "$BUNDLE/jdk.tar.xz")"), lib $(mib "$(du -sb "$BUNDLE/lib" | cut -f1)"), classes $(mib "$(du -sb "$BUNDLE/classes" "$BUNDLE/test-classes" | awk '{s += $1} END {print s}')"))"
echo "prepare.sh: working tree $(mib "$tree_bytes") + bundle = $(mib "$total") of the 64 MiB that travel to the GPU machine"
echo "bundle $bundle_bytes bytes; tree $tree_bytes bytes; total $total bytes (limit $LIMIT_BYTES)" >> "$BUNDLE/BUNDLE.txt"
[ "$total" -lt "$LIMIT_BYTES" ] || die "working tree + bundle = $(mib "$total"): over the 64 MiB that travel to the GPU machine"
echo "prepare.sh: ready. On the GPU machine: bash benchmarks/gpu/run.sh, with target/gpu-bundle carried along"
