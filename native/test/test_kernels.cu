// test_kernels.cu — every function of dive.h against a plain CPU loop written here, on fresh random inputs at
// several shapes (sizes off the tiles, experts with no rows, a single token). Device outputs are poisoned with a
// NaN pattern (0xFF bytes) before each call, so anything a kernel forgets to write fails the comparison.
// One PASS/FAIL line per case; the exit status is the number of failures (capped at 255), 0 when all pass.
//
//   make -C native test      (needs a CUDA GPU; links against build/libdive.so)
#include "dive.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

using std::vector;

// ---------------------------------------------------------------- reporting

static int failures = 0, passes = 0;

static void report(bool ok, const std::string& name, const std::string& detail = "") {
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
    fflush(stdout);
    if (ok) passes++; else failures++;
}

static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// a call that must succeed; on failure the case fails with the status's name
static bool ok_call(int status, const std::string& name, const char* what) {
    if (status == 0) return true;
    char buf[200];
    dive_error_string(status, buf, sizeof buf);
    report(false, name, fmt("%s returned %d (%s)", what, status, buf));
    return false;
}

// ---------------------------------------------------------------- random numbers (splitmix64)

static uint64_t rngState = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64() {
    uint64_t z = (rngState += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float) ((next_u64() >> 40) * (1.0 / (1ull << 24))); }
static int below(int n) { return (int) (next_u64() % (uint64_t) n); }
static vector<float> randoms(size_t n, float lo = -1.0f, float hi = 1.0f) {
    vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
}

// ---------------------------------------------------------------- bf16 on the host

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t) b << 16); }
static uint16_t f32_to_bf16(float f) { // round to nearest even, NaN kept NaN
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t) ((u >> 16) | 0x40u);
    return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------- device buffers

template <typename T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) {
        void* q = nullptr;
        if (dive_malloc(&q, (long) (count * sizeof(T)) + 16) != 0) { fprintf(stderr, "dive_malloc failed\n"); exit(2); }
        p = (T*) q;
        poison();
    }
    Dev(const vector<T>& host) : Dev(host.size()) { upload(host); }
    ~Dev() { dive_free(p); }
    Dev(const Dev&) = delete;
    void upload(const vector<T>& host) {
        if (dive_memcpy_h2d(p, host.data(), (long) (host.size() * sizeof(T)), nullptr) != 0) { fprintf(stderr, "h2d failed\n"); exit(2); }
    }
    void poison() { dive_memset(p, 0xff, (long) (n * sizeof(T)) + 16, nullptr); } // NaN for floats, −1 for ints
    vector<T> get() const {
        vector<T> host(n);
        int s = dive_memcpy_d2h_sync(host.data(), p, (long) (n * sizeof(T)), nullptr);
        if (s != 0) { char b[200]; dive_error_string(s, b, sizeof b); fprintf(stderr, "d2h failed: %s\n", b); exit(2); }
        return host;
    }
};

// all async work done, and no error left behind by a kernel
static bool synced(const std::string& name) { return ok_call(dive_stream_sync(nullptr), name, "dive_stream_sync"); }

// ---------------------------------------------------------------- comparisons

// |got − want| ≤ atol + rtol·|want| everywhere (NaN in got fails unless want is NaN too)
static void expect_close(const std::string& name, const vector<float>& got, const vector<float>& want, double atol,
                         double rtol) {
    double worst = 0;
    long bad = -1;
    for (size_t i = 0; i < want.size(); i++) {
        double g = got[i], w = want[i];
        if (std::isnan(w) && std::isnan(g)) continue;
        double err = fabs(g - w);
        if (!(err <= atol + rtol * fabs(w))) { if (bad < 0) bad = (long) i; }
        if (err > worst || std::isnan(err)) worst = std::isnan(err) ? INFINITY : err;
    }
    if (bad >= 0)
        report(false, name, fmt("first mismatch at %ld: got %.9g want %.9g; max |err| %.3g (n=%zu)", bad, got[bad], want[bad], worst, want.size()));
    else
        report(true, name, fmt("max |err| %.3g (n=%zu)", worst, want.size()));
}

template <typename T>
static void expect_equal(const std::string& name, const vector<T>& got, const vector<T>& want) {
    for (size_t i = 0; i < want.size(); i++)
        if (memcmp(&got[i], &want[i], sizeof(T)) != 0) {
            report(false, name, fmt("first difference at %zu of %zu", i, want.size()));
            return;
        }
    report(true, name, fmt("bitwise equal (n=%zu)", want.size()));
}

static void expect_status(const std::string& name, int got, int want) {
    report(got == want, name, fmt("status %d, expected %d", got, want));
}

// ================================================================ runtime.cu

static void test_runtime() {
    int major = -1, minor = -1;
    report(dive_version(&major, &minor) == 0 && major >= 1, "runtime version", fmt("%d.%d", major, minor));
    char buf[128];
    dive_error_string(DIVE_ERR_ARGUMENT, buf, sizeof buf);
    report(strstr(buf, "DIVE_ERR_ARGUMENT") != nullptr, "runtime error_string(DIVE_ERR_ARGUMENT)", buf);
    int driver = -1, runtime = -1;
    report(dive_driver_version(&driver, &runtime) == 0 && driver > 0 && runtime > 0, "runtime driver_version",
           fmt("driver %d runtime %d", driver, runtime));
    char name[256];
    long total = 0, freeBytes = 0, totalBytes = 0;
    int ccMajor = 0, ccMinor = 0, sms = 0;
    report(dive_device_info(0, name, sizeof name, &total, &ccMajor, &ccMinor, &sms) == 0 && total > 0 && sms > 0,
           "runtime device_info", fmt("%s, %ld MiB, cc %d.%d, %d SMs", name, total >> 20, ccMajor, ccMinor, sms));
    report(dive_mem_info(&freeBytes, &totalBytes) == 0 && freeBytes > 0 && freeBytes <= totalBytes, "runtime mem_info",
           fmt("%ld of %ld MiB free", freeBytes >> 20, totalBytes >> 20));

    // copies on a created stream: h2d, d2d, memset, d2h
    void* stream = nullptr;
    bool ok = dive_stream_create(&stream) == 0 && stream;
    vector<float> src = randoms(1001);
    Dev<float> a(src.size()), b(src.size());
    ok = ok && dive_memcpy_h2d(a.p, src.data(), (long) (src.size() * 4), stream) == 0;
    ok = ok && dive_memcpy_d2d(b.p, a.p, (long) (src.size() * 4), stream) == 0;
    ok = ok && dive_memset(a.p, 0, 400, stream) == 0;
    vector<float> gotB(src.size()), gotA(src.size());
    ok = ok && dive_memcpy_d2h_sync(gotB.data(), b.p, (long) (src.size() * 4), stream) == 0;
    ok = ok && dive_memcpy_d2h_sync(gotA.data(), a.p, (long) (src.size() * 4), stream) == 0;
    ok = ok && memcmp(gotB.data(), src.data(), src.size() * 4) == 0;
    for (int i = 0; i < 100; i++) ok = ok && gotA[i] == 0.0f;
    ok = ok && memcmp(gotA.data() + 100, src.data() + 100, (src.size() - 100) * 4) == 0;
    void *start = nullptr, *end = nullptr;
    float ms = -1;
    ok = ok && dive_event_create(&start) == 0 && dive_event_create(&end) == 0;
    ok = ok && dive_event_record(start, stream) == 0 && dive_memset(a.p, 1, 4000, stream) == 0 &&
         dive_event_record(end, stream) == 0 && dive_event_elapsed(&ms, start, end) == 0 && ms >= 0;
    ok = ok && dive_event_destroy(start) == 0 && dive_event_destroy(end) == 0;
    ok = ok && dive_stream_sync(stream) == 0 && dive_stream_destroy(stream) == 0;
    report(ok, "runtime streams, copies, memset, events", fmt("elapsed %.3f ms", ms));
}

// ================================================================ convert.cu

static void test_convert(size_t n) {
    std::string name = fmt("convert n=%zu", n);
    vector<float> in = randoms(n, -1e4f, 1e4f);
    // specials: NaN, ±∞, −0, a tie rounding down to even, a tie rounding up to even, the largest finite, a tiny
    const uint32_t specials[] = {0x7fc00001u, 0xffc00000u, 0x7f800000u, 0xff800000u, 0x80000000u, 0x3f808000u,
                                 0x3f818000u, 0x7f7fffffu, 0x00000001u, 0x3f80ffffu};
    for (size_t i = 0; i < sizeof specials / 4 && i < n; i++) in[i] = bits_to_f32(specials[i]);
    vector<uint16_t> want(n);
    for (size_t i = 0; i < n; i++) want[i] = f32_to_bf16(in[i]);
    Dev<float> dIn(in);
    Dev<uint16_t> dOut(n);
    if (!ok_call(dive_f32_to_bf16(dOut.p, dIn.p, (long) n, nullptr), name, "dive_f32_to_bf16") || !synced(name)) return;
    expect_equal(name + " f32→bf16", dOut.get(), want);
    vector<float> back(n);
    for (size_t i = 0; i < n; i++) back[i] = bf16_to_f32(want[i]);
    Dev<float> dBack(n);
    if (!ok_call(dive_bf16_to_f32(dBack.p, dOut.p, (long) n, nullptr), name, "dive_bf16_to_f32") || !synced(name)) return;
    expect_equal(name + " bf16→f32", dBack.get(), back);
}

// ================================================================ stats.cu

static void test_stats(int rows1, int rows2, int width) {
    std::string name = fmt("channel_stats rows %d+%d width %d", rows1, rows2, width);
    vector<double> mean(width, 0), m2(width, 0), sq(width, 0);
    Dev<double> dMean(mean), dM2(m2), dSq(sq);
    long count = 0;
    for (int rows : {rows1, rows2}) {
        vector<float> h = randoms((size_t) rows * width, -3, 5);
        Dev<float> dH(h);
        if (!ok_call(dive_channel_stats_update(dMean.p, dM2.p, dSq.p, count, dH.p, rows, width, nullptr), name, "update")) return;
        for (int j = 0; j < width; j++) { // ChannelStatistics.add, as written in Java
            double bm = 0, bs = 0, b2 = 0;
            for (int r = 0; r < rows; r++) { double v = h[(size_t) r * width + j]; bm += v; bs += v * v; }
            bm /= rows;
            for (int r = 0; r < rows; r++) { double dev = h[(size_t) r * width + j] - bm; b2 += dev * dev; }
            long na = count, nb = rows, n = na + nb;
            double delta = bm - mean[j];
            mean[j] = mean[j] + delta * nb / n;
            m2[j] = m2[j] + b2 + delta * delta * ((double) na * nb / n);
            sq[j] += bs;
        }
        count += rows;
        if (!synced(name)) return; // dH stays alive until the kernel is done
    }
    expect_equal(name + " mean", dMean.get(), mean);
    expect_equal(name + " m2", dM2.get(), m2);
    expect_equal(name + " sumSquares", dSq.get(), sq);
}

// ================================================================ prune.cu

template <typename T>
static void test_gather(int inRows, int width, int count) {
    std::string name = fmt("gather_rows/columns %zu-byte in %dx%d count %d", sizeof(T), inRows, width, count);
    vector<T> in((size_t) inRows * width);
    for (auto& v : in) v = (T) next_u64();
    vector<int> rowIdx(count), colIdx(count);
    for (auto& i : rowIdx) i = below(inRows);
    for (auto& i : colIdx) i = below(width);
    Dev<T> dIn(in), dRows((size_t) count * width), dCols((size_t) inRows * count);
    Dev<int> dRowIdx(rowIdx), dColIdx(colIdx);
    bool ok = ok_call(dive_gather_rows(dRows.p, dIn.p, dRowIdx.p, count, width, sizeof(T), nullptr), name, "gather_rows") &&
              ok_call(dive_gather_columns(dCols.p, dIn.p, dColIdx.p, inRows, width, count, sizeof(T), nullptr), name, "gather_columns") &&
              synced(name);
    if (!ok) return;
    vector<T> wantRows((size_t) count * width), wantCols((size_t) inRows * count);
    for (int r = 0; r < count; r++)
        for (int i = 0; i < width; i++) wantRows[(size_t) r * width + i] = in[(size_t) rowIdx[r] * width + i];
    for (int r = 0; r < inRows; r++)
        for (int c = 0; c < count; c++) wantCols[(size_t) r * count + c] = in[(size_t) r * width + colIdx[c]];
    expect_equal(name + " rows", dRows.get(), wantRows);
    expect_equal(name + " columns", dCols.get(), wantCols);
}

// ================================================================ route.cu

static void cpu_softmax(float* x, int n) { // ScalarBackend.softmax
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = (std::isnan(x[i]) || std::isnan(max)) ? NAN : fmaxf(max, x[i]);
    double sum = 0;
    for (int i = 0; i < n; i++) { float e = (float) exp((double) (x[i] - max)); x[i] = e; sum += e; }
    float inv = (float) (1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static void test_route_topk(int n, int E, int k) {
    std::string name = fmt("route_topk n=%d E=%d k=%d", n, E, k);
    vector<float> logits((size_t) n * E);
    for (auto& v : logits) v = (float) below(9) * 0.5f - 2.0f; // few distinct values: many ties
    if (n > 2) logits[(size_t) 2 * E + E / 2] = NAN;          // token 2 has a NaN logit
    vector<int> wantIds((size_t) n * k);
    vector<float> wantW((size_t) n * k);
    for (int t = 0; t < n; t++) {
        vector<bool> taken(E, false);
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (!taken[e] && (best < 0 || logits[(size_t) t * E + e] > logits[(size_t) t * E + best])) best = e;
            taken[best] = true;
            wantIds[(size_t) t * k + s] = best;
            wantW[(size_t) t * k + s] = logits[(size_t) t * E + best];
        }
        cpu_softmax(&wantW[(size_t) t * k], k);
    }
    Dev<float> dLogits(logits), dW((size_t) n * k);
    Dev<int> dIds((size_t) n * k);
    if (!ok_call(dive_route_topk(dIds.p, dW.p, dLogits.p, n, E, k, nullptr), name, "route_topk") || !synced(name)) return;
    expect_equal(name + " ids", dIds.get(), wantIds);
    expect_close(name + " weights", dW.get(), wantW, 1e-7, 1e-6);
}

// the CPU's counting sort (Backend.sortByExpert), bad ids sorted as expert 0 as dive.h says
static void cpu_sort(vector<int>& offsets, vector<int>& rowToken, vector<int>& slotRow, int& bad, const vector<int>& ids,
                     int n, int k, int E) {
    offsets.assign(E + 1, 0);
    rowToken.assign((size_t) n * k, 0);
    slotRow.assign((size_t) n * k, 0);
    bad = -1;
    for (int i = 0; i < n * k; i++) {
        int e = ids[i];
        if (e < 0 || e >= E) { if (bad < 0) bad = i; e = 0; }
        offsets[e + 1]++;
    }
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    vector<int> next(offsets.begin(), offsets.begin() + E);
    for (int i = 0; i < n * k; i++) {
        int e = ids[i];
        if (e < 0 || e >= E) e = 0;
        int row = next[e]++;
        rowToken[row] = i / k;
        slotRow[i] = row;
    }
}

static void test_sort_by_expert(int n, int k, int E, int usedExperts, bool withBadIds) {
    std::string name = fmt("sort_by_expert n=%d k=%d E=%d used=%d%s", n, k, E, usedExperts, withBadIds ? " bad ids" : "");
    vector<int> ids((size_t) n * k);
    for (auto& e : ids) e = below(usedExperts) * (E / usedExperts); // experts between the used ones stay empty
    if (withBadIds) {
        ids[(size_t) n * k * 2 / 3] = -1;
        ids[(size_t) n * k / 3] = E;      // the first bad one
        ids[(size_t) n * k - 1] = E + 7;
    }
    vector<int> offsets, rowToken, slotRow;
    int bad;
    cpu_sort(offsets, rowToken, slotRow, bad, ids, n, k, E);
    Dev<int> dIds(ids), dOffsets(E + 1), dRowToken((size_t) n * k), dSlotRow((size_t) n * k), dBad(1);
    if (!ok_call(dive_sort_by_expert(dOffsets.p, dRowToken.p, dSlotRow.p, dBad.p, dIds.p, n, k, E, nullptr), name, "sort") ||
        !synced(name))
        return;
    expect_equal(name + " offsets", dOffsets.get(), offsets);
    expect_equal(name + " rowToken", dRowToken.get(), rowToken);
    expect_equal(name + " slotRow", dSlotRow.get(), slotRow);
    expect_equal(name + " badAssignment", dBad.get(), vector<int>{bad});
}

// ================================================================ moe.cu

// expert offsets for `rows` permuted rows over E experts, some experts empty
static vector<int> random_offsets(int rows, int E, int emptyEvery) {
    vector<int> counts(E, 0);
    vector<int> live;
    for (int e = 0; e < E; e++) if (emptyEvery == 0 || e % emptyEvery != 1) live.push_back(e);
    for (int r = 0; r < rows; r++) counts[live[below((int) live.size())]]++;
    vector<int> offsets(E + 1, 0);
    for (int e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e];
    return offsets;
}

// rowsBound ≥ offsets[E]: rows past offsets[E] must stay untouched (still the NaN poison)
static void test_grouped_matmul(int E, int usedRows, int rowsBound, int N, int K, bool withBias, int emptyEvery) {
    std::string shape = fmt("E=%d rows=%d (bound %d) N=%d K=%d%s", E, usedRows, rowsBound, N, K, withBias ? " bias" : "");
    vector<int> offsets = random_offsets(usedRows, E, emptyEvery);
    vector<float> x = randoms((size_t) rowsBound * K), w = randoms((size_t) E * N * K), bias = randoms((size_t) E * N);
    // BF16: inputs rounded to bf16; reference in double on the rounded values; bound relative to Σ|x·w|
    vector<uint16_t> xb(x.size()), wb(w.size());
    for (size_t i = 0; i < x.size(); i++) xb[i] = f32_to_bf16(x[i]);
    for (size_t i = 0; i < w.size(); i++) wb[i] = f32_to_bf16(w[i]);
    const float poison = bits_to_f32(0xffffffffu); // what Dev::poison leaves: rows past offsets[E] must keep it
    vector<float> wantBf((size_t) rowsBound * N, poison), wantF32((size_t) rowsBound * N, poison);
    vector<float> scale((size_t) rowsBound * N, 0);
    for (int e = 0; e < E; e++)
        for (int r = offsets[e]; r < offsets[e + 1]; r++)
            for (int j = 0; j < N; j++) {
                double acc = 0, mag = 0;
                float accF = 0.0f; // the CPU's F32 loop: acc += x·w in order
                for (int p = 0; p < K; p++) {
                    double a = bf16_to_f32(xb[(size_t) r * K + p]), b = bf16_to_f32(wb[((size_t) e * N + j) * K + p]);
                    acc += a * b;
                    mag += fabs(a * b);
                    accF += x[(size_t) r * K + p] * w[((size_t) e * N + j) * K + p];
                }
                float bj = withBias ? bias[(size_t) e * N + j] : 0.0f;
                wantBf[(size_t) r * N + j] = (float) (acc + bj);
                scale[(size_t) r * N + j] = (float) (mag + fabs(bj));
                wantF32[(size_t) r * N + j] = withBias ? accF + bj : accF;
            }
    Dev<int> dOffsets(offsets);
    Dev<uint16_t> dXb(xb), dWb(wb);
    Dev<float> dX(x), dW(w), dBias(bias), dOut((size_t) rowsBound * N), dOut2((size_t) rowsBound * N);
    std::string name = "grouped_matmul_bf16 " + shape;
    if (ok_call(dive_grouped_matmul_bf16(dOut.p, dXb.p, dOffsets.p, dWb.p, withBias ? dBias.p : nullptr, E, rowsBound, N,
                                         K, nullptr), name, "launch") &&
        ok_call(dive_grouped_matmul_bf16(dOut2.p, dXb.p, dOffsets.p, dWb.p, withBias ? dBias.p : nullptr, E, rowsBound,
                                         N, K, nullptr), name, "second launch") &&
        synced(name)) {
        vector<float> got = dOut.get();
        long bad = -1;
        double worstRel = 0;
        for (size_t i = 0; i < got.size(); i++) {
            if (std::isnan(wantBf[i])) { if (!std::isnan(got[i])) { bad = (long) i; break; } continue; } // untouched
            // F32 accumulation of exact bf16 products: |err| ≤ (K + 2)·2⁻²² · Σ|x·w| even with truncating adds
            double err = fabs((double) got[i] - wantBf[i]), lim = (K + 2) * 0x1p-22 * scale[i] + 1e-6;
            if (!(err <= lim)) { bad = (long) i; break; }
            worstRel = fmax(worstRel, err / (scale[i] + 1e-30));
        }
        report(bad < 0, name, bad < 0 ? fmt("max |err|/Σ|x·w| %.3g", worstRel)
                                      : fmt("mismatch at row %ld col %ld: got %.9g want %.9g", bad / N, bad % N, got[bad], wantBf[bad]));
        expect_equal(name + " deterministic", dOut2.get(), got);
    }
    name = "grouped_matmul_f32 " + shape;
    dOut.poison();
    if (ok_call(dive_grouped_matmul_f32(dOut.p, dX.p, dOffsets.p, dW.p, withBias ? dBias.p : nullptr, E, rowsBound, N, K,
                                        nullptr), name, "launch") &&
        synced(name))
        expect_equal(name + " (the CPU's F32 loop)", dOut.get(), wantF32);
}

// a random permutation as sortByExpert would give: slotRow (n, k) over n·k rows
static vector<int> random_slot_rows(int n, int k) {
    vector<int> p((size_t) n * k);
    for (size_t i = 0; i < p.size(); i++) p[i] = (int) i;
    for (size_t i = p.size(); i > 1; i--) std::swap(p[i - 1], p[next_u64() % i]);
    return p;
}

static void test_combine(int n, int k, int d) {
    std::string name = fmt("combine_experts n=%d k=%d d=%d", n, k, d);
    vector<int> slotRow = random_slot_rows(n, k);
    vector<float> expertOut = randoms((size_t) n * k * d), weights = randoms((size_t) n * k, 0, 1), dy = randoms((size_t) n * d);
    vector<float> dxStart = randoms((size_t) n * d), dRows = randoms((size_t) n * k * d);
    vector<float> y((size_t) n * d), dExpertOut((size_t) n * k * d), dWeights((size_t) n * k), dx = dxStart;
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < d; i++) {
            float acc = 0.0f, accDx = dx[(size_t) t * d + i];
            for (int s = 0; s < k; s++) {
                size_t r = slotRow[(size_t) t * k + s];
                acc += weights[(size_t) t * k + s] * expertOut[r * d + i];
                accDx += dRows[r * d + i];
            }
            y[(size_t) t * d + i] = acc;
            dx[(size_t) t * d + i] = accDx;
        }
        for (int s = 0; s < k; s++) {
            size_t r = slotRow[(size_t) t * k + s];
            float g = weights[(size_t) t * k + s];
            double dot = 0;
            for (int i = 0; i < d; i++) {
                dExpertOut[r * d + i] = g * dy[(size_t) t * d + i];
                dot += (double) dy[(size_t) t * d + i] * expertOut[r * d + i];
            }
            dWeights[(size_t) t * k + s] = (float) dot;
        }
    }
    Dev<int> dSlot(slotRow);
    Dev<float> dEO(expertOut), dW(weights), dDy(dy), dY((size_t) n * d), dDEO((size_t) n * k * d), dDW((size_t) n * k);
    Dev<float> dDx(dxStart), dDRows(dRows);
    bool ok = ok_call(dive_combine_experts(dY.p, dEO.p, dSlot.p, dW.p, n, k, d, nullptr), name, "combine") &&
              ok_call(dive_combine_experts_backward(dDEO.p, dDW.p, dDy.p, dEO.p, dSlot.p, dW.p, n, k, d, nullptr), name, "backward") &&
              ok_call(dive_unpermute_add(dDx.p, dDRows.p, dSlot.p, n, k, d, nullptr), name, "unpermute_add") && synced(name);
    if (!ok) return;
    expect_equal(name + " y", dY.get(), y);
    expect_equal(name + " backward dExpertOut", dDEO.get(), dExpertOut);
    expect_close(name + " backward dWeights", dDW.get(), dWeights, 1e-5, 1e-5);
    expect_equal(fmt("unpermute_add n=%d k=%d d=%d", n, k, d), dDx.get(), dx);
}

// ================================================================ elementwise.cu

static void test_elementwise(long n) {
    std::string name = fmt("elementwise n=%ld", n);
    vector<float> gate = randoms(n, -8, 8), up = randoms(n), dOut = randoms(n), x = randoms(n), y = randoms(n);
    vector<float> out(n), dGate(n), dUp(n), xs = x;
    const float a = -0.75f;
    for (long i = 0; i < n; i++) {
        float g = gate[i], sig = 1.0f / (1.0f + (float) exp(-(double) g));
        out[i] = g / (1.0f + (float) exp(-(double) g)) * up[i];
        dGate[i] = dOut[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dUp[i] = dOut[i] * g * sig;
        xs[i] = x[i] + a * y[i];
    }
    Dev<float> dG(gate), dU(up), dO(dOut), dX(x), dY(y), dOutBuf(n), dDG(n), dDU(n), dAlias(gate);
    bool ok = ok_call(dive_swiglu(dOutBuf.p, dG.p, dU.p, n, nullptr), name, "swiglu") &&
              ok_call(dive_swiglu(dAlias.p, dAlias.p, dU.p, n, nullptr), name, "swiglu in place") &&
              ok_call(dive_swiglu_backward(dDG.p, dDU.p, dO.p, dG.p, dU.p, n, nullptr), name, "swiglu_backward") &&
              ok_call(dive_add_scaled(dX.p, dY.p, a, n, nullptr), name, "add_scaled") && synced(name);
    if (!ok) return;
    expect_close("swiglu n=" + std::to_string(n), dOutBuf.get(), out, 1e-6, 1e-5);
    expect_close("swiglu out = gate n=" + std::to_string(n), dAlias.get(), out, 1e-6, 1e-5);
    expect_close("swiglu_backward dGate n=" + std::to_string(n), dDG.get(), dGate, 1e-6, 1e-5);
    expect_close("swiglu_backward dUp n=" + std::to_string(n), dDU.get(), dUp, 1e-6, 1e-5);
    expect_close("add_scaled n=" + std::to_string(n), dX.get(), xs, 1e-7, 1e-6);
}

static void test_embedding(int T, int vocab, int d, bool bf16, bool withBadId) {
    std::string name = fmt("embedding%s T=%d vocab=%d d=%d%s", bf16 ? " bf16" : " f32", T, vocab, d, withBadId ? " bad id" : "");
    vector<float> table = randoms((size_t) vocab * d);
    vector<uint16_t> tableB(table.size());
    for (size_t i = 0; i < table.size(); i++) { tableB[i] = f32_to_bf16(table[i]); if (bf16) table[i] = bf16_to_f32(tableB[i]); }
    vector<int> ids(T);
    for (auto& id : ids) id = below(vocab);
    int wantBad = -1;
    if (withBadId) { ids[T / 2] = vocab; ids[T - 1] = -3; wantBad = T / 2; }
    vector<float> out((size_t) T * d, 0.0f);
    for (int t = 0; t < T; t++)
        if (ids[t] >= 0 && ids[t] < vocab)
            for (int i = 0; i < d; i++) out[(size_t) t * d + i] = table[(size_t) ids[t] * d + i];
    Dev<float> dTableF(table), dOut((size_t) T * d);
    Dev<uint16_t> dTableB(tableB);
    Dev<int> dIds(ids), dBad(vector<int>{-1});
    if (!ok_call(dive_embedding(dOut.p, bf16 ? (void*) dTableB.p : (void*) dTableF.p, bf16 ? 2 : 4, dIds.p, T, vocab, d,
                                dBad.p, nullptr), name, "embedding") || !synced(name))
        return;
    expect_equal(name, dOut.get(), out);
    expect_equal(name + " badIndex", dBad.get(), vector<int>{wantBad});
}

static void test_embedding_backward(int T, int vocab, int d) {
    std::string name = fmt("embedding_backward T=%d vocab=%d d=%d", T, vocab, d);
    vector<float> dTable = randoms((size_t) vocab * d), dOut = randoms((size_t) T * d);
    vector<int> ids(T);
    for (auto& id : ids) id = below(vocab < 5 ? vocab : 5); // repeats
    Dev<float> dT(dTable), dO(dOut);
    Dev<int> dIds(ids);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) dTable[(size_t) ids[t] * d + i] += dOut[(size_t) t * d + i];
    if (!ok_call(dive_embedding_backward(dT.p, dO.p, dIds.p, T, d, nullptr), name, "launch") || !synced(name)) return;
    expect_equal(name, dT.get(), dTable);
}

// ================================================================ norm.cu

static void test_rmsnorm(int rows, int d, bool withDWeight, bool inPlace) {
    std::string name = fmt("rmsnorm rows=%d d=%d%s%s", rows, d, withDWeight ? "" : " no dWeight", inPlace ? " in place" : "");
    const float eps = 1e-5f;
    vector<float> x = randoms((size_t) rows * d, -2, 2), weight = randoms(d), dOut = randoms((size_t) rows * d);
    vector<float> dWeight0 = randoms(d), out((size_t) rows * d), dx((size_t) rows * d), dWeight = dWeight0;
    for (int r = 0; r < rows; r++) { // ScalarBackend.rmsNorm / rmsNormBackward
        double ss = 0, dot = 0;
        for (int i = 0; i < d; i++) {
            ss += (double) x[(size_t) r * d + i] * x[(size_t) r * d + i];
            dot += (double) weight[i] * dOut[(size_t) r * d + i] * x[(size_t) r * d + i];
        }
        float inv = (float) (1.0 / sqrt(ss / d + eps));
        float c = (float) (dot * inv * inv * inv / d);
        for (int i = 0; i < d; i++) {
            size_t o = (size_t) r * d + i;
            out[o] = x[o] * inv * weight[i];
            dx[o] = inv * weight[i] * dOut[o] - c * x[o];
            dWeight[i] += dOut[o] * x[o] * inv;
        }
    }
    Dev<float> dX(x), dW(weight), dO(dOut), dY((size_t) rows * d), dDx((size_t) rows * d), dDW(dWeight0);
    float* yPtr = inPlace ? dX.p : dY.p;
    float* dxPtr = inPlace ? dO.p : dDx.p;
    // backward first (it reads x, which the in-place forward then overwrites)
    bool ok = ok_call(dive_rmsnorm_backward(dxPtr, withDWeight ? dDW.p : nullptr, dO.p, dX.p, dW.p, rows, d, eps, nullptr),
                      name, "backward") &&
              ok_call(dive_rmsnorm(yPtr, dX.p, dW.p, rows, d, eps, nullptr), name, "forward") && synced(name);
    if (!ok) return;
    expect_close(name + " out", inPlace ? dX.get() : dY.get(), out, 1e-6, 1e-5);
    expect_close(name + " dx", inPlace ? dO.get() : dDx.get(), dx, 1e-5, 1e-4);
    expect_close(name + " dWeight", dDW.get(), withDWeight ? dWeight : dWeight0, 1e-4, 1e-4);
}

// ================================================================ rope.cu

static void test_rope(int rows, int heads, int headDim) {
    std::string name = fmt("rope rows=%d heads=%d headDim=%d", rows, heads, headDim);
    int half = headDim / 2;
    vector<float> x = randoms((size_t) rows * heads * headDim), invFreq(half);
    for (int i = 0; i < half; i++) invFreq[i] = (float) pow(10000.0, -2.0 * i / headDim);
    vector<int> positions(rows);
    for (int r = 0; r < rows; r++) positions[r] = 3 * r + below(1000);
    auto cpu = [&](vector<float> v, bool inverse) {
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < half; i++) {
                float angle = (float) (inverse ? -positions[r] : positions[r]) * invFreq[i];
                float c = (float) cos((double) angle), s = (float) sin((double) angle);
                for (int h = 0; h < heads; h++) {
                    size_t base = ((size_t) r * heads + h) * headDim;
                    float a = v[base + i], b = v[base + i + half];
                    v[base + i] = a * c - b * s;
                    v[base + i + half] = b * c + a * s;
                }
            }
        return v;
    };
    Dev<float> dX(x), dX2(x);
    Dev<int> dPos(positions);
    Dev<float> dFreq(invFreq);
    bool ok = ok_call(dive_rope(dX.p, rows, heads, headDim, dPos.p, dFreq.p, 0, nullptr), name, "forward") &&
              ok_call(dive_rope(dX2.p, rows, heads, headDim, dPos.p, dFreq.p, 1, nullptr), name, "inverse") && synced(name);
    if (!ok) return;
    vector<float> fwd = dX.get();
    expect_close(name + " forward", fwd, cpu(x, false), 1e-6, 1e-5);
    expect_close(name + " inverse", dX2.get(), cpu(x, true), 1e-6, 1e-5);
    if (!ok_call(dive_rope(dX.p, rows, heads, headDim, dPos.p, dFreq.p, 1, nullptr), name, "round trip") || !synced(name)) return;
    expect_close(name + " inverse(forward(x)) = x", dX.get(), x, 1e-5, 1e-5);
}

// ================================================================ attention.cu

static void test_attention(int T, int startPos, int nHeads, int nKvHeads, int hd) {
    std::string name = fmt("attention T=%d start=%d heads=%d/%d hd=%d", T, startPos, nHeads, nKvHeads, hd);
    int seq = startPos + T, group = nHeads / nKvHeads;
    float scale = 1.0f / sqrtf((float) hd);
    vector<float> q = randoms((size_t) T * nHeads * hd, -2, 2);
    vector<float> kc = randoms((size_t) (seq + 3) * nKvHeads * hd, -2, 2), vc = randoms(kc.size()); // maxSeq = seq + 3
    vector<float> out((size_t) T * nHeads * hd);
    vector<double> p(seq);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nHeads; h++) { // softmax(scale·q·k) · v in double
            int len = startPos + t + 1, kvh = h / group;
            const float* qr = &q[((size_t) t * nHeads + h) * hd];
            double max = -INFINITY, sum = 0;
            for (int s = 0; s < len; s++) {
                double dot = 0;
                for (int i = 0; i < hd; i++) dot += (double) qr[i] * kc[((size_t) s * nKvHeads + kvh) * hd + i];
                p[s] = dot * scale;
                max = fmax(max, p[s]);
            }
            for (int s = 0; s < len; s++) { p[s] = exp(p[s] - max); sum += p[s]; }
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int s = 0; s < len; s++) acc += p[s] * vc[((size_t) s * nKvHeads + kvh) * hd + i];
                out[((size_t) t * nHeads + h) * hd + i] = (float) (acc / sum);
            }
        }
    Dev<float> dQ(q), dK(kc), dV(vc), dOut(out.size());
    if (!ok_call(dive_attention(dOut.p, dQ.p, dK.p, dV.p, T, startPos, nHeads, nKvHeads, hd, scale, nullptr), name, "launch") ||
        !synced(name))
        return;
    expect_close(name, dOut.get(), out, 2e-5, 1e-4);
}

static void test_attention_backward(int B, int T, int nHeads, int nKvHeads, int hd) {
    std::string name = fmt("attention_backward B=%d T=%d heads=%d/%d hd=%d", B, T, nHeads, nKvHeads, hd);
    int group = nHeads / nKvHeads, qDim = nHeads * hd, kvDim = nKvHeads * hd;
    float scale = 1.0f / sqrtf((float) hd);
    vector<float> q = randoms((size_t) B * T * qDim, -2, 2), dOut = randoms(q.size());
    vector<float> k = randoms((size_t) B * T * kvDim, -2, 2), v = randoms(k.size());
    vector<double> dq(q.size(), 0), dk(k.size(), 0), dv(k.size(), 0), p(T), dp(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nHeads; h++) {
            int kvh = h / group;
            for (int t = 0; t < T; t++) { // ScalarBackend.attentionBackward in double
                size_t qOff = ((size_t) b * T + t) * qDim + (size_t) h * hd;
                double max = -INFINITY, sum = 0, pdp = 0;
                for (int s = 0; s <= t; s++) {
                    size_t kOff = ((size_t) b * T + s) * kvDim + (size_t) kvh * hd;
                    double dot = 0, dpv = 0;
                    for (int i = 0; i < hd; i++) { dot += (double) q[qOff + i] * k[kOff + i]; dpv += (double) dOut[qOff + i] * v[kOff + i]; }
                    p[s] = dot * scale;
                    dp[s] = dpv;
                    max = fmax(max, p[s]);
                }
                for (int s = 0; s <= t; s++) { p[s] = exp(p[s] - max); sum += p[s]; }
                for (int s = 0; s <= t; s++) { p[s] /= sum; pdp += p[s] * dp[s]; }
                for (int s = 0; s <= t; s++) {
                    size_t kOff = ((size_t) b * T + s) * kvDim + (size_t) kvh * hd;
                    double ds = p[s] * (dp[s] - pdp) * scale;
                    for (int i = 0; i < hd; i++) {
                        dq[qOff + i] += ds * k[kOff + i];
                        dk[kOff + i] += ds * q[qOff + i];
                        dv[kOff + i] += p[s] * dOut[qOff + i];
                    }
                }
            }
        }
    Dev<float> dDOut(dOut), dQ(q), dK(k), dV(v), gq(q.size()), gk(k.size()), gv(k.size()), gq2(q.size()), gk2(k.size()), gv2(k.size());
    bool ok = ok_call(dive_attention_backward(gq.p, gk.p, gv.p, dDOut.p, dQ.p, dK.p, dV.p, B, T, nHeads, nKvHeads, hd, scale,
                                              nullptr), name, "launch") &&
              ok_call(dive_attention_backward(gq2.p, gk2.p, gv2.p, dDOut.p, dQ.p, dK.p, dV.p, B, T, nHeads, nKvHeads, hd,
                                              scale, nullptr), name, "second launch") && synced(name);
    if (!ok) return;
    auto asFloat = [](const vector<double>& a) { return vector<float>(a.begin(), a.end()); };
    vector<float> q1 = gq.get(), k1 = gk.get(), v1 = gv.get();
    expect_close(name + " dq", q1, asFloat(dq), 1e-4, 1e-3);
    expect_close(name + " dk", k1, asFloat(dk), 1e-4, 1e-3);
    expect_close(name + " dv", v1, asFloat(dv), 1e-4, 1e-3);
    bool same = gq2.get() == q1 && gk2.get() == k1 && gv2.get() == v1;
    report(same, name + " deterministic", same ? "two runs bitwise equal" : "two runs differ");
}

// ================================================================ loss.cu

static void test_cross_entropy(int rows, int vocab, bool withGrad, bool inPlace, bool withBadTarget) {
    std::string name = fmt("cross_entropy rows=%d vocab=%d%s%s%s", rows, vocab, withGrad ? "" : " no grad",
                           inPlace ? " in place" : "", withBadTarget ? " bad target" : "");
    vector<float> logits = randoms((size_t) rows * vocab, -6, 6);
    vector<int> targets(rows);
    for (auto& t : targets) t = below(vocab);
    if (rows > 2) targets[1] = -100;
    int wantBad = -1;
    if (withBadTarget) { targets[rows - 1] = vocab; wantBad = rows - 1; }
    const float gradScale = 0.37f;
    vector<float> loss(rows), dLogits((size_t) rows * vocab, 0.0f);
    for (int r = 0; r < rows; r++) { // ScalarBackend.crossEntropy per row, gradScale already holding 1/count
        int target = targets[r];
        const float* x = &logits[(size_t) r * vocab];
        if (target == -100) { loss[r] = 0; continue; }
        if (target < 0 || target >= vocab) { loss[r] = NAN; continue; }
        float max = -INFINITY;
        for (int i = 0; i < vocab; i++) max = fmaxf(max, x[i]);
        double sum = 0;
        for (int i = 0; i < vocab; i++) sum += (float) exp((double) (x[i] - max));
        loss[r] = (float) (log(sum) + max - x[target]);
        float inv = (float) (1.0 / sum);
        for (int i = 0; i < vocab; i++)
            dLogits[(size_t) r * vocab + i] = ((float) exp((double) (x[i] - max)) * inv - (i == target ? 1.0f : 0.0f)) * gradScale;
    }
    Dev<float> dLogitsIn(logits), dLoss(rows), dGrad((size_t) rows * vocab);
    Dev<int> dTargets(targets), dBad(vector<int>{-1});
    float* gradPtr = !withGrad ? nullptr : inPlace ? dLogitsIn.p : dGrad.p;
    if (!ok_call(dive_cross_entropy(dLoss.p, gradPtr, dLogitsIn.p, dTargets.p, rows, vocab, gradScale, dBad.p, nullptr), name,
                 "launch") || !synced(name))
        return;
    expect_close(name + " loss", dLoss.get(), loss, 1e-5, 1e-5);
    if (withGrad) expect_close(name + " dLogits", inPlace ? dLogitsIn.get() : dGrad.get(), dLogits, 1e-7, 1e-5);
    expect_equal(name + " badIndex", dBad.get(), vector<int>{wantBad});
}

// ================================================================ adamw.cu

static void test_adamw(long n, float weightDecay) {
    std::string name = fmt("adamw n=%ld weightDecay=%g", n, weightDecay);
    const float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    vector<float> param = randoms(n), m(n, 0.0f), v(n, 0.0f);
    Dev<float> dP(param), dM(m), dV(v);
    for (int step = 1; step <= 3; step++) {
        vector<float> grad = randoms(n, -0.1f, 0.1f);
        Dev<float> dG(grad);
        float bc1 = (float) (1 - pow(beta1, step)), bc2 = (float) (1 - pow(beta2, step));
        if (!ok_call(dive_adamw(dP.p, dG.p, dM.p, dV.p, n, lr, beta1, beta2, eps, weightDecay, bc1, bc2, nullptr), name, "step") ||
            !synced(name))
            return;
        // dive.train.AdamW.step, its scalars formed in double from the F32 arguments
        float stepSize = (float) ((double) lr / bc1), sqrtBc2 = (float) sqrt((double) bc2);
        float omb1 = (float) (1 - (double) beta1), omb2 = (float) (1 - (double) beta2);
        float decayFactor = (float) (1 - (double) lr * weightDecay);
        for (long i = 0; i < n; i++) {
            float p = param[i];
            if (weightDecay > 0) p *= decayFactor;
            float g = grad[i];
            m[i] = m[i] + omb1 * (g - m[i]);
            v[i] = v[i] * beta2 + omb2 * g * g;
            float denom = (float) sqrt((double) v[i]) / sqrtBc2 + eps;
            p -= stepSize * (m[i] / denom);
            param[i] = p;
        }
    }
    expect_equal(name + " param", dP.get(), param);
    expect_equal(name + " m", dM.get(), m);
    expect_equal(name + " v", dV.get(), v);
}

// ================================================================ argument checks

static void test_arguments() {
    const int A = DIVE_ERR_ARGUMENT;
    Dev<float> f(64);
    Dev<int> i(64);
    float* F = f.p;
    int* I = i.p;
    expect_status("args f32_to_bf16 n<0", dive_f32_to_bf16(F, F, -1, nullptr), A);
    expect_status("args f32_to_bf16 null in", dive_f32_to_bf16(F, nullptr, 4, nullptr), A);
    expect_status("args f32_to_bf16 n=0 is a no-op", dive_f32_to_bf16(nullptr, nullptr, 0, nullptr), 0);
    expect_status("args bf16_to_f32 null out", dive_bf16_to_f32(nullptr, F, 4, nullptr), A);
    expect_status("args malloc bytes<0", dive_malloc((void**) &F, -5), A);
    expect_status("args memcpy_h2d bytes<0", dive_memcpy_h2d(F, F, -1, nullptr), A);
    expect_status("args channel_stats rows<0", dive_channel_stats_update((double*) F, (double*) F, (double*) F, 0, F, -1, 4, nullptr), A);
    expect_status("args channel_stats null mean", dive_channel_stats_update(nullptr, (double*) F, (double*) F, 0, F, 2, 4, nullptr), A);
    expect_status("args gather_rows elementBytes 3", dive_gather_rows(F, F, I, 2, 4, 3, nullptr), A);
    expect_status("args gather_columns null index", dive_gather_columns(F, F, nullptr, 2, 4, 2, 4, nullptr), A);
    expect_status("args route_topk k>E", dive_route_topk(I, F, F, 2, 4, 5, nullptr), A);
    expect_status("args route_topk E>256", dive_route_topk(I, F, F, 2, 257, 2, nullptr), A);
    expect_status("args route_topk k=0", dive_route_topk(I, F, F, 2, 4, 0, nullptr), A);
    expect_status("args sort_by_expert E=0", dive_sort_by_expert(I, I, I, I, I, 2, 1, 0, nullptr), A);
    expect_status("args sort_by_expert null ids", dive_sort_by_expert(I, I, I, I, nullptr, 2, 1, 4, nullptr), A);
    expect_status("args grouped_matmul_bf16 K<0", dive_grouped_matmul_bf16(F, F, I, F, nullptr, 2, 4, 4, -1, nullptr), A);
    expect_status("args grouped_matmul_bf16 null offsets", dive_grouped_matmul_bf16(F, F, nullptr, F, nullptr, 2, 4, 4, 4, nullptr), A);
    expect_status("args grouped_matmul_bf16 rows=0 is a no-op", dive_grouped_matmul_bf16(nullptr, nullptr, nullptr, nullptr, nullptr, 2, 0, 4, 4, nullptr), 0);
    expect_status("args grouped_matmul_f32 E=0", dive_grouped_matmul_f32(F, F, I, F, nullptr, 0, 4, 4, 4, nullptr), A);
    expect_status("args combine_experts k=0", dive_combine_experts(F, F, I, F, 2, 0, 4, nullptr), A);
    expect_status("args combine_experts_backward null dy", dive_combine_experts_backward(F, F, nullptr, F, I, F, 2, 1, 4, nullptr), A);
    expect_status("args unpermute_add d<0", dive_unpermute_add(F, F, I, 2, 1, -4, nullptr), A);
    expect_status("args swiglu n<0", dive_swiglu(F, F, F, -2, nullptr), A);
    expect_status("args swiglu_backward null up", dive_swiglu_backward(F, F, F, F, nullptr, 4, nullptr), A);
    expect_status("args add_scaled null y", dive_add_scaled(F, nullptr, 1.0f, 4, nullptr), A);
    expect_status("args embedding elementBytes 1", dive_embedding(F, F, 1, I, 2, 4, 4, I, nullptr), A);
    expect_status("args embedding_backward T<0", dive_embedding_backward(F, F, I, -1, 4, nullptr), A);
    expect_status("args rmsnorm null weight", dive_rmsnorm(F, F, nullptr, 2, 4, 1e-5f, nullptr), A);
    expect_status("args rmsnorm_backward rows<0", dive_rmsnorm_backward(F, F, F, F, F, -1, 4, 1e-5f, nullptr), A);
    expect_status("args rope odd headDim", dive_rope(F, 2, 1, 5, I, F, 0, nullptr), A);
    expect_status("args attention headDim 257", dive_attention(F, F, F, F, 1, 0, 2, 1, 257, 1.0f, nullptr), A);
    expect_status("args attention heads not a multiple of kv heads", dive_attention(F, F, F, F, 1, 0, 3, 2, 8, 1.0f, nullptr), A);
    expect_status("args attention_backward null dk", dive_attention_backward(F, nullptr, F, F, F, F, F, 1, 2, 2, 1, 8, 1.0f, nullptr), A);
    expect_status("args cross_entropy vocab 0", dive_cross_entropy(F, F, F, I, 2, 0, 1.0f, I, nullptr), A);
    expect_status("args adamw null m", dive_adamw(F, F, nullptr, F, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0.1f, 0.001f, nullptr), A);
    expect_status("args no kernel error left behind", dive_stream_sync(nullptr), 0);
}

// ================================================================ main

int main() {
    int count = 0;
    int status = dive_device_count(&count);
    if (status != 0 || count < 1) {
        char buf[200];
        dive_error_string(status, buf, sizeof buf);
        printf("FAIL no CUDA device (status %d: %s)\n", status, buf);
        return 1;
    }
    if (!ok_call(dive_set_device(0), "set_device 0", "dive_set_device")) return 1;

    test_runtime();
    for (size_t n : {1, 1000, 100003}) test_convert(n);
    test_stats(1, 1, 7);
    test_stats(37, 5, 300);
    test_stats(1000, 333, 129);
    test_gather<float>(50, 77, 13);
    test_gather<uint16_t>(9, 1000, 1);
    test_gather<uint16_t>(300, 129, 300);

    test_route_topk(1, 8, 1);
    test_route_topk(37, 8, 2);
    test_route_topk(1000, 64, 8);
    test_route_topk(5, 256, 256);
    test_sort_by_expert(1, 1, 4, 4, false);
    test_sort_by_expert(37, 2, 8, 8, false);
    test_sort_by_expert(1000, 8, 64, 16, false); // 48 experts empty, several tiles of 1024
    test_sort_by_expert(5000, 2, 256, 256, false);
    test_sort_by_expert(777, 2, 16, 16, true);

    //                  E  used  bound  N    K    bias  emptyEvery
    test_grouped_matmul(1, 1, 1, 64, 64, false, 0);        // a single row
    test_grouped_matmul(4, 300, 300, 200, 136, true, 0);   // N off the tile, K % 8 == 0 (cp.async path)
    test_grouped_matmul(8, 1000, 1100, 130, 77, true, 3);  // K % 8 != 0 (guarded path), empty experts, rows past offsets[E]
    test_grouped_matmul(16, 129, 129, 128, 32, false, 2);  // more experts than tiles of rows
    test_grouped_matmul(3, 4100, 4100, 256, 512, false, 0);
    test_grouped_matmul(2, 8192, 8192, 512, 1024, true, 0);
    test_combine(1, 1, 5);
    test_combine(37, 2, 300);
    test_combine(500, 8, 129);

    for (long n : {1L, 1000L, 1000003L}) test_elementwise(n);
    test_embedding(1, 10, 5, false, false);
    test_embedding(37, 1000, 300, true, false);
    test_embedding(37, 1000, 300, false, true);
    test_embedding_backward(1, 3, 7);
    test_embedding_backward(300, 50, 129);
    test_rmsnorm(1, 1, true, false);
    test_rmsnorm(37, 300, true, false);
    test_rmsnorm(200, 1000, false, true);
    test_rmsnorm(1000, 2048, true, true);
    test_rope(1, 1, 2);
    test_rope(37, 4, 64);
    test_rope(300, 3, 128);

    //             T   start heads kv  hd
    test_attention(1, 0, 1, 1, 8);
    test_attention(1, 100, 4, 2, 64);
    test_attention(37, 5, 4, 2, 64);
    test_attention(20, 0, 2, 1, 256);
    test_attention(50, 30, 6, 3, 96);
    test_attention(130, 0, 8, 8, 128);
    test_attention_backward(1, 1, 1, 1, 8);
    test_attention_backward(2, 37, 4, 2, 64);
    test_attention_backward(1, 50, 2, 1, 256);
    test_attention_backward(2, 70, 6, 3, 96);
    test_attention_backward(1, 129, 8, 2, 128);

    test_cross_entropy(1, 1, true, false, false);
    test_cross_entropy(37, 1000, true, false, false);
    test_cross_entropy(37, 1000, false, false, true);
    test_cross_entropy(9, 32003, true, true, true);
    test_adamw(1, 0.01f);
    test_adamw(100003, 0.01f);
    test_adamw(1000, 0.0f);

    test_arguments();

    printf("%d passed, %d failed\n", passes, failures);
    return failures > 255 ? 255 : failures;
}
