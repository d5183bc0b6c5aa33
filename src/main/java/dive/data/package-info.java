/**
 * Multi-domain text corpora for calibration, affinity mining and training.
 *
 * <p>{@link dive.data.CorpusBuilder} reads installed Debian packages, the npm package spdx-license-list and the JDK's
 * {@code lib/src.zip} (install them with {@code src/main/scripts/install-corpus-sources.sh}) and writes, for each
 * dataset of {@link dive.data.Catalog}, {@code <out>/<dataset>/{train,calib,eval}.jsonl} (one
 * {@code {"id": ..., "text": ...}} per line) and {@code <out>/manifest.json}. Splits are disjoint and decided by a
 * hash of each document id. {@link dive.data.Corpus} reads a built corpus or the bundled sample
 * ({@code /dive/corpus/} on the classpath); {@link dive.data.CorpusSampler} makes such a sample.
 */
package dive.data;
