package dive.bench;

import dive.backend.VectorBackend;
import dive.tensor.DType;
import dive.tensor.Tensor;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * GEMM against NumPy/OpenBLAS sgemm, interleaved: out (M, N) = x (M, K) · w (N, K)ᵀ in F32 on 2 threads, in rounds of
 * about ROUND_MS of dive's vector backend's calls, then as many calls of each peer (one {@code numpy_sgemm.py --serve} process per
 * OpenBLAS core type; each side's worker threads left to fall asleep before the next side runs), so a machine whose
 * speed drifts slows both sides alike. Prints, per shape, the medians of every
 * call's GFLOP/s and the median over rounds of dive ÷ the faster peer.
 * <pre>
 * java -cp target/dive.jar dive.bench.GemmVsPeer --python PY --script benchmarks/peers/numpy_sgemm.py
 *      [--rounds 15] [--round-ms 200] [--coretype auto] [--coretype SKYLAKEX] SHAPE...
 * </pre>
 * {@code --coretype auto} lets OpenBLAS detect the CPU (any OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE of the caller
 * removed); a named core type sets OPENBLAS_CORETYPE.
 */
public final class GemmVsPeer {
    /** pause after each side's calls: OpenBLAS's and dive's worker threads spin a while after a call before they sleep */
    private static final long SETTLE_MS = 300;

    private record Peer(String core, Process process, PrintWriter in, BufferedReader out) {}

    public static void main(String[] args) throws Exception {
        String python = "python3", script = "benchmarks/peers/numpy_sgemm.py";
        int rounds = 15, roundMs = 200;
        List<String> cores = new ArrayList<>(), shapes = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--python" -> python = args[++i];
                case "--script" -> script = args[++i];
                case "--rounds" -> rounds = Integer.parseInt(args[++i]);
                case "--round-ms" -> roundMs = Integer.parseInt(args[++i]);
                case "--coretype" -> cores.add(args[++i]);
                default -> {
                    if (args[i].startsWith("--")) throw new IllegalArgumentException("GemmVsPeer: unknown option " + args[i]);
                    shapes.add(args[i]);
                }
            }
        }
        if (cores.isEmpty()) cores.add("auto");
        List<Peer> peers = new ArrayList<>();
        for (String core : cores) {
            ProcessBuilder pb = new ProcessBuilder(python, script, "--serve").redirectError(ProcessBuilder.Redirect.INHERIT);
            pb.environment().remove("OPENBLAS_CORETYPE");
            pb.environment().remove("OPENBLAS_L2_SIZE");
            if (!core.equals("auto")) pb.environment().put("OPENBLAS_CORETYPE", core);
            Process p = pb.start();
            peers.add(new Peer(core, p, new PrintWriter(p.getOutputStream(), true, StandardCharsets.UTF_8),
                    new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))));
        }
        VectorBackend backend = new VectorBackend(2);
        System.out.printf("# dive VectorBackend (2 threads) vs NumPy/OpenBLAS (2 threads), %d rounds of ~%d ms each side, medians%n", rounds, roundMs);
        StringBuilder header = new StringBuilder(String.format("%16s %13s", "shape MxNxK", "dive GFLOP/s"));
        for (Peer p : peers) header.append(String.format(" %22s", "OpenBLAS " + p.core()));
        System.out.println(header.append(String.format(" %18s", "dive ÷ best peer")));
        try (Arena arena = Arena.ofShared()) {
            for (String shape : shapes) {
                int[] mnk = BenchWeights.shape(shape);
                int m = mnk[0], n = mnk[1], k = mnk[2];
                double flop = 2.0 * m * n * k;
                Tensor w = BenchWeights.weight(arena, DType.F32, n, k, 1);
                float[] x = BenchWeights.activations(m * k, 2), out = new float[m * n];
                // dive alone first (the JIT's last tier needs seconds of calls: 6 s before the first shape, 2 s before
                // the others), then a round's calls from its speed
                double[] warm = new double[50];
                long warmNanos = shape.equals(shapes.getFirst()) ? 6_000_000_000L : 2_000_000_000L;
                for (long until = System.nanoTime() + warmNanos, i = 0; System.nanoTime() < until; i++) {
                    long t0 = System.nanoTime();
                    backend.matmul(out, x, m, w);
                    warm[(int) (i % warm.length)] = System.nanoTime() - t0;
                }
                int calls = (int) Math.clamp(Math.round(roundMs * 1e6 / median(Arrays.stream(warm).filter(t -> t > 0).toArray())), 3, 1000);
                double[] dive = new double[rounds * calls];
                double[][] peer = new double[peers.size()][rounds * calls];
                double[] ratios = new double[rounds];
                for (int r = -1; r < rounds; r++) {  // one warm-up round
                    double[] roundDive = new double[calls];
                    for (int c = 0; c < calls; c++) {
                        long t0 = System.nanoTime();
                        backend.matmul(out, x, m, w);
                        roundDive[c] = flop / (System.nanoTime() - t0);
                    }
                    Thread.sleep(SETTLE_MS);
                    double bestPeer = 0;
                    double[][] roundPeer = new double[peers.size()][];
                    for (int p = 0; p < peers.size(); p++) {
                        peers.get(p).in().println(shape + " " + calls);
                        String line = peers.get(p).out().readLine();
                        if (line == null) throw new IllegalStateException("GemmVsPeer: the peer (" + peers.get(p).core() + ") stopped");
                        roundPeer[p] = Arrays.stream(line.replaceAll("[\\[\\]\\s]", "").split(","))
                                .mapToDouble(s -> flop / Double.parseDouble(s) / 1e9).toArray();
                        bestPeer = Math.max(bestPeer, median(roundPeer[p]));
                        Thread.sleep(SETTLE_MS);
                    }
                    if (r < 0) continue;
                    System.arraycopy(roundDive, 0, dive, r * calls, calls);
                    for (int p = 0; p < peers.size(); p++) System.arraycopy(roundPeer[p], 0, peer[p], r * calls, calls);
                    ratios[r] = median(roundDive) / bestPeer;
                }
                StringBuilder row = new StringBuilder(String.format("%16s %13.1f", shape, median(dive)));
                for (double[] p : peer) row.append(String.format(" %22.1f", median(p)));
                System.out.println(row.append(String.format(" %18.2f", median(ratios))));
            }
        } finally {
            for (Peer p : peers) { p.in().close(); p.process().destroy(); }
        }
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
