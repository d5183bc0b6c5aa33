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
#include <memory>
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

// ================================================================ the device-tensor backend's kernels

// prune.cu: the checked gather with conversion, rows counted on the device
static void test_gather_convert_rows(int xRows, int width, int maxCount, int count, bool rowMap, bool withBad) {
    std::string name = fmt("gather_convert_rows xRows=%d width=%d max=%d count=%d%s%s", xRows, width, maxCount, count,
                           rowMap ? " row map" : "", withBad ? " bad row" : "");
    vector<float> x = randoms((size_t) xRows * width, -3, 3);
    vector<int> rows(maxCount);
    for (auto& r : rows) r = below(xRows);
    int n = count < maxCount ? count : maxCount, wantBad = -1;
    if (withBad && rowMap && n > 2) { rows[n / 2] = xRows; rows[n - 1] = -1; wantBad = n / 2; }
    const float poison = bits_to_f32(0xffffffffu);
    vector<float> wantF((size_t) maxCount * width, poison);
    vector<uint16_t> wantB((size_t) maxCount * width, 0xffff);
    for (int r = 0; r < n; r++) {
        int src = rowMap ? rows[r] : r;
        bool ok = src >= 0 && src < xRows;
        for (int i = 0; i < width; i++) {
            float v = ok ? x[(size_t) src * width + i] : 0.0f;
            wantF[(size_t) r * width + i] = v;
            wantB[(size_t) r * width + i] = f32_to_bf16(v);
        }
    }
    Dev<float> dX(x), dOutF((size_t) maxCount * width);
    Dev<uint16_t> dOutB((size_t) maxCount * width);
    Dev<int> dRows(rows), dCount(vector<int>{count}), dBad(vector<int>{-1}), dBad2(vector<int>{-1});
    bool ok = ok_call(dive_gather_convert_rows(dOutF.p, 0, dX.p, xRows, rowMap ? dRows.p : nullptr, dCount.p, maxCount,
                                               width, dBad.p, nullptr), name, "f32") &&
              ok_call(dive_gather_convert_rows(dOutB.p, 1, dX.p, xRows, rowMap ? dRows.p : nullptr, dCount.p, maxCount,
                                               width, dBad2.p, nullptr), name, "bf16") && synced(name);
    if (!ok) return;
    expect_equal(name + " f32", dOutF.get(), wantF);
    expect_equal(name + " bf16", dOutB.get(), wantB);
    expect_equal(name + " badIndex", dBad.get(), vector<int>{wantBad});
}

// elementwise.cu: bias add and gradient, scale, multiply (the CPU's loops, F32 rounded as written)
static void test_bias_scale_multiply(long rows, int width) {
    std::string name = fmt("bias/scale/multiply rows=%ld width=%d", rows, width);
    long n = rows * width;
    vector<float> y = randoms(n), bias = randoms(width), db0 = randoms(width), dy = randoms(n), x = randoms(n), m = randoms(n);
    vector<float> yWant = y, db = db0, xs = x, xm = x;
    const float a = -1.37f;
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < width; j++) {
            yWant[r * width + j] += bias[j];
            db[j] += dy[r * width + j];
        }
    for (long i = 0; i < n; i++) { xs[i] *= a; xm[i] *= m[i]; }
    Dev<float> dY(y), dBias(bias), dDb(db0), dDy(dy), dXs(x), dXm(x), dM(m);
    bool ok = ok_call(dive_add_bias(dY.p, dBias.p, rows, width, nullptr), name, "add_bias") &&
              ok_call(dive_bias_backward(dDb.p, dDy.p, rows, width, nullptr), name, "bias_backward") &&
              ok_call(dive_scale(dXs.p, a, n, nullptr), name, "scale") &&
              ok_call(dive_multiply(dXm.p, dM.p, n, nullptr), name, "multiply") && synced(name);
    if (!ok) return;
    expect_equal(name + " add_bias", dY.get(), yWant);
    expect_equal(name + " bias_backward (row order)", dDb.get(), db);
    expect_equal(name + " scale", dXs.get(), xs);
    expect_equal(name + " multiply", dXm.get(), xm);
}

// CpuBackend.splittableDraw, as Java writes it (long arithmetic wraps as uint64_t does)
static double splittable_draw_host(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (double) (z >> 11) * 0x1.0p-53;
}

static void test_dropout(long n, long seed, long firstDraw, double p) {
    std::string name = fmt("dropout n=%ld seed=%ld first=%ld p=%g", n, seed, firstDraw, p);
    vector<float> x = randoms(n, -4, 4), mask(n), out(n);
    float keep = (float) (1 / (1 - p));
    long dropped = 0;
    for (long i = 0; i < n; i++) {
        mask[i] = splittable_draw_host((uint64_t) seed, (uint64_t) (firstDraw + i)) < p ? 0.0f : keep;
        out[i] = x[i] * mask[i];
        dropped += mask[i] == 0.0f;
    }
    Dev<float> dX(x), dMask(n), dOut(n);
    if (!ok_call(dive_dropout(dMask.p, dOut.p, dX.p, n, seed, firstDraw, p, keep, nullptr), name, "launch") || !synced(name))
        return;
    expect_equal(name + " mask", dMask.get(), mask);
    expect_equal(name + fmt(" xDropped (%ld dropped)", dropped), dOut.get(), out);
}

static void test_scatter_add_rows(int count, int width, int xRows, bool withBad) {
    std::string name = fmt("scatter_add_rows count=%d width=%d xRows=%d%s", count, width, xRows, withBad ? " bad row" : "");
    vector<float> x = randoms((size_t) xRows * width), src = randoms((size_t) count * width), want = x;
    vector<int> rows(count);
    for (auto& r : rows) r = below(xRows < 4 ? xRows : 4); // repeats
    int wantBad = -1;
    if (withBad) { rows[count / 2] = xRows; rows[count - 1] = -2; wantBad = count / 2; }
    for (int r = 0; r < count; r++)
        if (rows[r] >= 0 && rows[r] < xRows)
            for (int i = 0; i < width; i++) want[(size_t) rows[r] * width + i] += src[(size_t) r * width + i];
    Dev<float> dX(x), dSrc(src);
    Dev<int> dRows(rows), dBad(vector<int>{-1});
    if (!ok_call(dive_scatter_add_rows(dX.p, dSrc.p, dRows.p, count, width, xRows, dBad.p, nullptr), name, "launch") ||
        !synced(name))
        return;
    expect_equal(name + " (source order)", dX.get(), want);
    expect_equal(name + " badIndex", dBad.get(), vector<int>{wantBad});
}

// reduce.cu
static void test_reductions(long n, long nonFiniteAt) {
    std::string name = fmt("sum_of_squares / first_non_finite n=%ld", n);
    vector<float> x = randoms(n, -3, 3);
    const double initial = 12.5; // accumulated into
    double want = initial;
    for (long i = 0; i < n; i++) want += (double) x[i] * x[i];
    Dev<float> dX(x);
    Dev<double> dSum(vector<double>{initial});
    Dev<long> dIdx(1), dIdx2(1);
    if (!ok_call(dive_sum_of_squares(dSum.p, dX.p, n, nullptr), name, "sum_of_squares") ||
        !ok_call(dive_first_non_finite(dIdx.p, dX.p, n, nullptr), name, "first_non_finite (all finite)") || !synced(name))
        return;
    vector<double> got = dSum.get();
    double err = fabs(got[0] - want);
    report(err <= 1e-12 * want, name + " sum_of_squares (accumulated)", fmt("got %.17g want %.17g", got[0], want));
    expect_equal(name + " first_non_finite none", dIdx.get(), vector<long>{-1});
    if (nonFiniteAt >= 0 && nonFiniteAt < n) {
        vector<float> y = x;
        y[nonFiniteAt] = NAN;
        if (nonFiniteAt + 7 < n) y[nonFiniteAt + 7] = -INFINITY;
        if (nonFiniteAt + 1000 < n) y[nonFiniteAt + 1000] = INFINITY;
        Dev<float> dY(y);
        if (!ok_call(dive_first_non_finite(dIdx2.p, dY.p, n, nullptr), name, "first_non_finite") || !synced(name)) return;
        expect_equal(name + fmt(" first_non_finite at %ld", nonFiniteAt), dIdx2.get(), vector<long>{nonFiniteAt});
    }
}

// route.cu: soft routing, counts, routing gradient
static void test_fold_first_index() {
    std::string name = "fold_first_index";
    Dev<int> flag(vector<int>{-1}), a(vector<int>{7}), b(vector<int>{-1}), c(vector<int>{3}), d(vector<int>{9});
    bool ok = ok_call(dive_fold_first_index(flag.p, b.p, nullptr), name, "none") && synced(name);
    if (!ok) return;
    expect_equal(name + " none stays none", flag.get(), vector<int>{-1});
    ok = ok_call(dive_fold_first_index(flag.p, a.p, nullptr), name, "7") && ok_call(dive_fold_first_index(flag.p, b.p, nullptr), name, "none") &&
         ok_call(dive_fold_first_index(flag.p, d.p, nullptr), name, "9") && ok_call(dive_fold_first_index(flag.p, c.p, nullptr), name, "3") &&
         synced(name);
    if (!ok) return;
    expect_equal(name + " the smallest, sticky", flag.get(), vector<int>{3});
}

static void test_soft_routing(int n, int E, float invTemperature) {
    std::string name = fmt("soft_routing n=%d E=%d invT=%g", n, E, invTemperature);
    vector<float> logits = randoms((size_t) n * E, -5, 5), want((size_t) n * E);
    vector<int> wantIds((size_t) n * E);
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < E; j++) {
            want[(size_t) t * E + j] = logits[(size_t) t * E + j] * invTemperature;
            wantIds[(size_t) t * E + j] = j;
        }
        cpu_softmax(&want[(size_t) t * E], E);
    }
    Dev<float> dLogits(logits), dW((size_t) n * E);
    Dev<int> dIds((size_t) n * E);
    if (!ok_call(dive_soft_routing(dIds.p, dW.p, dLogits.p, n, E, invTemperature, nullptr), name, "launch") || !synced(name))
        return;
    expect_equal(name + " ids", dIds.get(), wantIds);
    expect_close(name + " weights", dW.get(), want, 1e-7, 1e-6);
}

static void test_softmax_rows(long rows, int n) {
    std::string name = fmt("softmax_rows rows=%ld n=%d", rows, n);
    vector<float> x = randoms((size_t) rows * n, -8, 8), want = x;
    if (rows > 1) x[n] = want[n] = NAN; // row 1 has a NaN: the whole row NaN
    for (long r = 0; r < rows; r++) cpu_softmax(&want[(size_t) r * n], n);
    Dev<float> dX(x);
    if (!ok_call(dive_softmax_rows(dX.p, rows, n, nullptr), name, "launch") || !synced(name)) return;
    expect_close(name, dX.get(), want, 1e-7, 1e-6);
}

static void test_count_experts(int assignments, int E, bool withBad) {
    std::string name = fmt("count_experts assignments=%d E=%d%s", assignments, E, withBad ? " bad id" : "");
    vector<int> ids(assignments), counts0(E + 3), want;
    for (auto& c : counts0) c = below(10);
    for (auto& id : ids) id = below(E);
    int wantBad = -1;
    if (withBad) { ids[assignments / 3] = E + 3; ids[assignments - 1] = -1; wantBad = assignments / 3; }
    want = counts0;
    for (int i = 0; i < assignments; i++)
        if (ids[i] >= 0 && ids[i] < E + 3) want[ids[i]]++;
    Dev<int> dCounts(counts0), dIds(ids), dBad(vector<int>{-1});
    if (!ok_call(dive_count_experts(dCounts.p, E + 3, dIds.p, assignments, dBad.p, nullptr), name, "launch") || !synced(name))
        return;
    expect_equal(name + " counts", dCounts.get(), want);
    expect_equal(name + " badIndex", dBad.get(), vector<int>{wantBad});
}

static void test_routing_backward(int n, int slots, int E, double invTemperature) {
    std::string name = fmt("routing_backward n=%d slots=%d E=%d", n, slots, E);
    vector<float> w = randoms((size_t) n * slots, 0, 1), dw = randoms((size_t) n * slots), dz0 = randoms((size_t) n * E);
    vector<int> ids((size_t) n * slots);
    for (int t = 0; t < n; t++)
        for (int s = 0; s < slots; s++) ids[(size_t) t * slots + s] = (s * 7 + t) % E; // distinct when slots ≤ E, 7 ∤ E
    vector<float> dz = dz0;
    for (int t = 0; t < n; t++) { // CpuBackend.routingBackward, as Java evaluates it
        double mean = 0;
        for (int s = 0; s < slots; s++) mean += (double) w[(size_t) t * slots + s] * dw[(size_t) t * slots + s];
        for (int s = 0; s < slots; s++) {
            size_t i = (size_t) t * slots + s;
            dz[(size_t) t * E + ids[i]] += (float) ((double) w[i] * ((double) dw[i] - mean) * invTemperature);
        }
    }
    Dev<float> dW(w), dDw(dw), dDz(dz0);
    Dev<int> dIds(ids);
    if (!ok_call(dive_routing_backward(dDz.p, dW.p, dDw.p, dIds.p, n, slots, E, invTemperature, nullptr, nullptr), name,
                 "launch") || !synced(name))
        return;
    expect_equal(name + " dLogits", dDz.get(), dz);
}

// moe.cu: the table forms of the grouped matmuls (forward and input gradient), the weight gradient, the bias ops
template <typename T>
using DevPtr = std::unique_ptr<Dev<T>>;

static void test_grouped_gemm_table(int E, int usedRows, int rowsBound, int N, int K, bool withBias, int emptyEvery,
                                    bool backwardInput) {
    int C = backwardInput ? K : N, D = backwardInput ? N : K; // out (rows, C) = in (rows, D) · B
    std::string shape = fmt("E=%d rows=%d (bound %d) N=%d K=%d%s%s", E, usedRows, rowsBound, N, K,
                            withBias ? " bias" : "", backwardInput ? " backward-input" : "");
    vector<int> offsets = random_offsets(usedRows, E, emptyEvery);
    vector<float> in = randoms((size_t) rowsBound * D);
    vector<uint16_t> inB(in.size());
    for (size_t i = 0; i < in.size(); i++) inB[i] = f32_to_bf16(in[i]);
    vector<vector<float>> w(E), bias(E);
    vector<vector<uint16_t>> wB(E);
    for (int e = 0; e < E; e++) {
        w[e] = randoms((size_t) N * K);
        wB[e].resize(w[e].size());
        for (size_t i = 0; i < w[e].size(); i++) wB[e][i] = f32_to_bf16(w[e][i]);
        if (withBias && e % 2 == 0) bias[e] = randoms(N);
    }
    // B(p, j): the forward reads w[e][j, p], the input gradient w[e][p, j]
    auto b = [&](int e, int p, int j, bool bf) {
        size_t at = backwardInput ? (size_t) p * K + j : (size_t) j * K + p;
        return bf ? bf16_to_f32(wB[e][at]) : w[e][at];
    };
    const float poison = bits_to_f32(0xffffffffu);
    vector<float> wantBf((size_t) rowsBound * C, poison), wantF32((size_t) rowsBound * C, poison), scale((size_t) rowsBound * C, 0);
    for (int e = 0; e < E; e++)
        for (int r = offsets[e]; r < offsets[e + 1]; r++)
            for (int j = 0; j < C; j++) {
                double acc = 0, mag = 0;
                float accF = 0.0f;
                for (int p = 0; p < D; p++) {
                    double a = bf16_to_f32(inB[(size_t) r * D + p]), bb = b(e, p, j, true);
                    acc += a * bb;
                    mag += fabs(a * bb);
                    accF += in[(size_t) r * D + p] * b(e, p, j, false);
                }
                bool hasBias = !bias[e].empty();
                float bj = hasBias ? bias[e][j] : 0.0f;
                wantBf[(size_t) r * C + j] = (float) (acc + bj);
                scale[(size_t) r * C + j] = (float) (mag + fabs(bj));
                wantF32[(size_t) r * C + j] = hasBias ? accF + bj : accF;
            }
    Dev<int> dOffsets(offsets);
    Dev<uint16_t> dInB(inB);
    Dev<float> dIn(in), dOut((size_t) rowsBound * C), dOut2((size_t) rowsBound * C);
    vector<DevPtr<uint16_t>> dWB;
    vector<DevPtr<float>> dW, dBias;
    vector<const void*> hWB(E);
    vector<const float*> hW(E), hBias(E, nullptr);
    for (int e = 0; e < E; e++) {
        dWB.emplace_back(new Dev<uint16_t>(wB[e]));
        dW.emplace_back(new Dev<float>(w[e]));
        hWB[e] = dWB[e]->p;
        hW[e] = dW[e]->p;
        if (!bias[e].empty()) {
            dBias.emplace_back(new Dev<float>(bias[e]));
            hBias[e] = dBias.back()->p;
        }
    }
    const float* const* biasTable = withBias ? hBias.data() : nullptr;
    std::string name = "grouped_gemm_bf16 " + shape;
    if (ok_call(dive_grouped_gemm_bf16(dOut.p, dInB.p, dOffsets.p, hWB.data(), biasTable, E, rowsBound, N, K,
                                       backwardInput, nullptr), name, "launch") &&
        ok_call(dive_grouped_gemm_bf16(dOut2.p, dInB.p, dOffsets.p, hWB.data(), biasTable, E, rowsBound, N, K,
                                       backwardInput, nullptr), name, "second launch") &&
        synced(name)) {
        vector<float> got = dOut.get();
        long bad = -1;
        double worstRel = 0;
        for (size_t i = 0; i < got.size(); i++) {
            if (std::isnan(wantBf[i])) { if (!std::isnan(got[i])) { bad = (long) i; break; } continue; } // untouched
            double err = fabs((double) got[i] - wantBf[i]), lim = (D + 2) * 0x1p-22 * scale[i] + 1e-6;
            if (!(err <= lim)) { bad = (long) i; break; }
            worstRel = fmax(worstRel, err / (scale[i] + 1e-30));
        }
        report(bad < 0, name, bad < 0 ? fmt("max |err|/Σ|x·w| %.3g", worstRel)
                                      : fmt("mismatch at row %ld col %ld: got %.9g want %.9g", bad / C, bad % C, got[bad], wantBf[bad]));
        expect_equal(name + " deterministic", dOut2.get(), got);
    }
    name = "grouped_gemm_f32 " + shape;
    dOut.poison();
    if (ok_call(dive_grouped_gemm_f32(dOut.p, dIn.p, dOffsets.p, hW.data(), biasTable, E, rowsBound, N, K, backwardInput,
                                      nullptr), name, "launch") &&
        synced(name))
        expect_equal(name + " (the CPU's F32 loop)", dOut.get(), wantF32);
}

static void test_grouped_weight_grad(int E, int usedRows, int rowsBound, int N, int K, int emptyEvery) {
    std::string name = fmt("grouped_weight_grad_f32 E=%d rows=%d (bound %d) N=%d K=%d", E, usedRows, rowsBound, N, K);
    vector<int> offsets = random_offsets(usedRows, E, emptyEvery);
    vector<float> dOut = randoms((size_t) rowsBound * N), x = randoms((size_t) rowsBound * K);
    vector<vector<float>> dw0(E), want(E);
    vector<DevPtr<float>> dDw;
    vector<float*> hDw(E, nullptr);
    for (int e = 0; e < E; e++) {
        dw0[e] = randoms((size_t) N * K);
        want[e] = dw0[e];
        dDw.emplace_back(new Dev<float>(dw0[e]));
        if (e % 3 != 2) hDw[e] = dDw[e]->p; // every third expert has no gradient: untouched
        if (!hDw[e]) continue;
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                float acc = 0.0f; // the kernel's order: the expert's rows in order, then added to dw
                for (int r = offsets[e]; r < offsets[e + 1]; r++) acc += dOut[(size_t) r * N + n] * x[(size_t) r * K + k];
                if (offsets[e + 1] > offsets[e]) want[e][(size_t) n * K + k] += acc;
            }
    }
    Dev<int> dOffsets(offsets);
    Dev<float> dDOut(dOut), dX(x);
    if (!ok_call(dive_grouped_weight_grad_f32(hDw.data(), dDOut.p, dX.p, dOffsets.p, E, rowsBound, N, K, nullptr), name,
                 "launch") || !synced(name))
        return;
    for (int e = 0; e < E; e++) expect_equal(name + fmt(" dw[%d]", e), dDw[e]->get(), want[e]);
}

static void test_expert_bias(int E, int usedRows, int rowsBound, int d, int emptyEvery) {
    std::string name = fmt("expert_add_bias / bias_backward E=%d rows=%d (bound %d) d=%d", E, usedRows, rowsBound, d);
    vector<int> offsets = random_offsets(usedRows, E, emptyEvery);
    vector<float> out = randoms((size_t) rowsBound * d), dy = randoms((size_t) rowsBound * d), wantOut = out;
    vector<vector<float>> bias(E), db0(E), wantDb(E);
    vector<DevPtr<float>> dBias, dDb;
    vector<const float*> hBias(E, nullptr);
    vector<float*> hDb(E, nullptr);
    for (int e = 0; e < E; e++) {
        bias[e] = randoms(d);
        db0[e] = randoms(d);
        wantDb[e] = db0[e];
        dBias.emplace_back(new Dev<float>(bias[e]));
        dDb.emplace_back(new Dev<float>(db0[e]));
        if (e % 2 == 0) hBias[e] = dBias[e]->p;
        if (e % 3 != 1) hDb[e] = dDb[e]->p;
        for (int r = offsets[e]; r < offsets[e + 1]; r++)
            for (int i = 0; i < d; i++) {
                if (hBias[e]) wantOut[(size_t) r * d + i] += bias[e][i];
                if (hDb[e]) wantDb[e][i] += dy[(size_t) r * d + i];
            }
    }
    Dev<int> dOffsets(offsets);
    Dev<float> dOut(out), dDy(dy);
    bool ok = ok_call(dive_expert_add_bias(dOut.p, dOffsets.p, hBias.data(), E, rowsBound, d, nullptr), name, "add") &&
              ok_call(dive_expert_bias_backward(hDb.data(), dDy.p, dOffsets.p, E, rowsBound, d, nullptr), name, "backward") &&
              synced(name);
    if (!ok) return;
    expect_equal(name + " out", dOut.get(), wantOut);
    for (int e = 0; e < E; e++) expect_equal(name + fmt(" db[%d]", e), dDb[e]->get(), wantDb[e]);
}

// elementwise.cu: the per-expert row forms (rows in use counted on the device; dropout drawing expert by expert)
static void test_expert_rows(int E, int usedRows, int rowsBound, int width, int emptyEvery) {
    std::string name = fmt("swiglu_rows / expert_dropout E=%d rows=%d (bound %d) width=%d", E, usedRows, rowsBound, width);
    vector<int> offsets = random_offsets(usedRows, E, emptyEvery);
    size_t n = (size_t) rowsBound * width, used = (size_t) offsets[E] * width;
    vector<float> gate = randoms(n, -8, 8), up = randoms(n), dOut = randoms(n), x = randoms(n, -3, 3);
    const float poison = bits_to_f32(0xffffffffu);
    vector<float> out(n, poison), dGate(n, poison), dUp(n, poison), mask(n, poison), dropped(n, poison);
    for (size_t i = 0; i < used; i++) {
        float g = gate[i], sig = 1.0f / (1.0f + (float) exp(-(double) g));
        out[i] = g / (1.0f + (float) exp(-(double) g)) * up[i];
        dGate[i] = dOut[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dUp[i] = dOut[i] * g * sig;
    }
    const long seed = 1234567, firstDraw = 99;
    const int stride = 3 * width, prefix = width; // the second of three dropping linears of width `width`
    const double p = 0.3;
    float keep = (float) (1 / (1 - p));
    for (int e = 0; e < E; e++) {
        long first = offsets[e], count = offsets[e + 1] - first, base = firstDraw + first * stride + count * prefix;
        for (long i = 0; i < count; i++)
            for (int c = 0; c < width; c++) {
                size_t at = (size_t) (first + i) * width + c;
                mask[at] = splittable_draw_host((uint64_t) seed, (uint64_t) (base + i * width + c)) < p ? 0.0f : keep;
                dropped[at] = x[at] * mask[at];
            }
    }
    Dev<int> dOffsets(offsets);
    Dev<float> dG(gate), dU(up), dO(dOut), dX(x), dOut_((size_t) n), dDG(n), dDU(n), dMask(n), dDropped(n);
    const int* rowCount = dOffsets.p + E;
    bool ok = ok_call(dive_swiglu_rows(dOut_.p, dG.p, dU.p, rowCount, rowsBound, width, nullptr), name, "swiglu_rows") &&
              ok_call(dive_swiglu_backward_rows(dDG.p, dDU.p, dO.p, dG.p, dU.p, rowCount, rowsBound, width, nullptr), name,
                      "swiglu_backward_rows") &&
              ok_call(dive_expert_dropout(dMask.p, dDropped.p, dX.p, dOffsets.p, E, rowsBound, width, seed, firstDraw, stride,
                                          prefix, p, keep, nullptr), name, "expert_dropout") &&
              synced(name);
    if (!ok) return;
    expect_close(name + " swiglu", dOut_.get(), out, 1e-6, 1e-5);
    expect_close(name + " swiglu_backward dGate", dDG.get(), dGate, 1e-6, 1e-5);
    expect_close(name + " swiglu_backward dUp", dDU.get(), dUp, 1e-6, 1e-5);
    expect_equal(name + " expert_dropout mask", dMask.get(), mask);
    expect_equal(name + " expert_dropout x", dDropped.get(), dropped);
}

// loss.cu: the mean on the device
static void test_cross_entropy_mean(int rows, int vocab, bool withGrad, bool withBadTarget, bool allIgnored) {
    std::string name = fmt("cross_entropy_mean rows=%d vocab=%d%s%s%s", rows, vocab, withGrad ? "" : " no grad",
                           withBadTarget ? " bad target" : "", allIgnored ? " all ignored" : "");
    vector<float> logits = randoms((size_t) rows * vocab, -6, 6);
    vector<int> targets(rows);
    for (int r = 0; r < rows; r++) targets[r] = allIgnored || r % 4 == 3 ? -100 : below(vocab);
    double wantBad = -1;
    if (withBadTarget) { targets[rows - 1] = vocab; wantBad = rows - 1; }
    int count = 0;
    for (int t : targets) count += t != -100;
    const float gradScale = 0.37f;
    float g = count == 0 ? 0.0f : gradScale / (float) count;
    double lossSum = 0;
    vector<float> dLogits((size_t) rows * vocab, 0.0f);
    for (int r = 0; r < rows; r++) { // ScalarBackend.crossEntropy
        int target = targets[r];
        const float* x = &logits[(size_t) r * vocab];
        if (target == -100 || target < 0 || target >= vocab) continue;
        float max = -INFINITY;
        for (int i = 0; i < vocab; i++) max = fmaxf(max, x[i]);
        double sum = 0;
        for (int i = 0; i < vocab; i++) sum += (float) exp((double) (x[i] - max));
        lossSum += log(sum) + max - x[target];
        float inv = (float) (1.0 / sum);
        for (int i = 0; i < vocab; i++)
            dLogits[(size_t) r * vocab + i] = ((float) exp((double) (x[i] - max)) * inv - (i == target ? 1.0f : 0.0f)) * g;
    }
    Dev<float> dLogitsIn(logits), dGrad((size_t) rows * vocab);
    Dev<int> dTargets(targets);
    Dev<double> dResult(3);
    if (!ok_call(dive_cross_entropy_mean(dResult.p, withGrad ? dGrad.p : nullptr, dLogitsIn.p, dTargets.p, rows, vocab,
                                         gradScale, nullptr), name, "launch") || !synced(name))
        return;
    vector<double> got = dResult.get();
    report(got[1] == count && got[2] == wantBad, name + " count, bad row", fmt("count %g (want %d), bad %g (want %g)", got[1], count, got[2], wantBad));
    if (!withBadTarget) {
        double err = fabs(got[0] - lossSum);
        report(err <= 1e-5 * fabs(lossSum) + 1e-9, name + " Σ loss", fmt("got %.12g want %.12g", got[0], lossSum));
    }
    if (withGrad && !withBadTarget) expect_close(name + " dLogits", dGrad.get(), dLogits, 1e-7, 1e-5);
}

// adamw.cu: the step from the caller's scalars (Backend.AdamWStep.applyPlain)
static void test_adamw_step(long n, bool decay) {
    std::string name = fmt("adamw_step n=%ld%s", n, decay ? " decay" : "");
    const float decayFactor = 0.99997f, stepSize = 3.0e-3f, sqrtBc2 = 0.0316f, omb1 = 0.100000024f, beta2 = 0.999f,
                omb2 = 0.001f, eps = 1e-8f;
    vector<float> param = randoms(n), m = randoms(n, -0.01f, 0.01f), v = randoms(n, 0, 0.001f), grad = randoms(n, -0.1f, 0.1f);
    Dev<float> dP(param), dG(grad), dM(m), dV(v);
    if (!ok_call(dive_adamw_step(dP.p, dG.p, dM.p, dV.p, n, decay ? 1 : 0, decayFactor, stepSize, sqrtBc2, omb1, beta2,
                                 omb2, eps, nullptr), name, "step") || !synced(name))
        return;
    for (long i = 0; i < n; i++) {
        float p = param[i];
        if (decay) p *= decayFactor;
        float g = grad[i];
        m[i] = m[i] + omb1 * (g - m[i]);
        v[i] = v[i] * beta2 + omb2 * g * g;
        float denom = (float) sqrt((double) v[i]) / sqrtBc2 + eps;
        p -= stepSize * (m[i] / denom);
        param[i] = p;
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
    expect_status("args gather_convert_rows width<0", dive_gather_convert_rows(F, 0, F, 4, I, I, 4, -1, I, nullptr), A);
    expect_status("args gather_convert_rows null x", dive_gather_convert_rows(F, 1, nullptr, 4, I, I, 4, 4, I, nullptr), A);
    expect_status("args add_bias null bias", dive_add_bias(F, nullptr, 2, 4, nullptr), A);
    expect_status("args scale n<0", dive_scale(F, 2.0f, -1, nullptr), A);
    expect_status("args multiply null y", dive_multiply(F, nullptr, 4, nullptr), A);
    expect_status("args bias_backward rows<0", dive_bias_backward(F, F, -1, 4, nullptr), A);
    expect_status("args dropout null mask", dive_dropout(nullptr, F, F, 4, 1, 0, 0.5, 2.0f, nullptr), A);
    expect_status("args swiglu_rows null count", dive_swiglu_rows(F, F, F, nullptr, 4, 4, nullptr), A);
    expect_status("args swiglu_backward_rows width<0", dive_swiglu_backward_rows(F, F, F, F, F, I, 4, -1, nullptr), A);
    expect_status("args expert_dropout E=0", dive_expert_dropout(F, F, F, I, 0, 4, 4, 1, 0, 4, 0, 0.5, 2.0f, nullptr), A);
    expect_status("args scatter_add_rows null rows", dive_scatter_add_rows(F, F, nullptr, 2, 4, 4, I, nullptr), A);
    expect_status("args sum_of_squares null out", dive_sum_of_squares(nullptr, F, 4, nullptr), A);
    expect_status("args first_non_finite n<0", dive_first_non_finite((long*) I, F, -1, nullptr), A);
    expect_status("args fold_first_index null flag", dive_fold_first_index(nullptr, I, nullptr), A);
    expect_status("args soft_routing E=0", dive_soft_routing(I, F, F, 2, 0, 1.0f, nullptr), A);
    expect_status("args softmax_rows n<0", dive_softmax_rows(F, 2, -1, nullptr), A);
    expect_status("args count_experts null ids", dive_count_experts(I, 4, nullptr, 2, I, nullptr), A);
    expect_status("args routing_backward slots=0", dive_routing_backward(F, F, F, I, 2, 0, 4, 1.0, I, nullptr), A);
    {
        const void* w2[2] = {F, nullptr};
        const float* b2[2] = {nullptr, nullptr};
        float* g2[2] = {F, F};
        expect_status("args grouped_gemm_bf16 a null weight", dive_grouped_gemm_bf16(F, F, I, w2, nullptr, 2, 4, 4, 4, 0, nullptr), A);
        expect_status("args grouped_gemm_bf16 257 experts", dive_grouped_gemm_bf16(F, F, I, w2, nullptr, 257, 4, 4, 4, 0, nullptr), A);
        expect_status("args grouped_gemm_f32 bias with backwardInput", dive_grouped_gemm_f32(F, F, I, (const float* const*) w2, b2, 2, 4, 4, 4, 1, nullptr), A);
        expect_status("args grouped_weight_grad_f32 null offsets", dive_grouped_weight_grad_f32(g2, F, F, nullptr, 2, 4, 4, 4, nullptr), A);
        expect_status("args expert_add_bias null table", dive_expert_add_bias(F, I, nullptr, 2, 4, 4, nullptr), A);
        expect_status("args expert_bias_backward E=0", dive_expert_bias_backward(g2, F, I, 0, 4, 4, nullptr), A);
    }
    expect_status("args cross_entropy_mean vocab 0", dive_cross_entropy_mean((double*) F, F, F, I, 2, 0, 1.0f, nullptr), A);
    expect_status("args adamw_step null grad", dive_adamw_step(F, nullptr, F, F, 4, 0, 1, 1, 1, 0.1f, 0.9f, 0.1f, 1e-8f, nullptr), A);
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

    test_gather_convert_rows(50, 77, 60, 37, true, false);
    test_gather_convert_rows(300, 130, 300, 1000, false, false); // the count past maxCount: maxCount rows
    test_gather_convert_rows(20, 9, 40, 25, true, true);
    test_bias_scale_multiply(1, 1);
    test_bias_scale_multiply(37, 300);
    test_bias_scale_multiply(1000, 129);
    test_dropout(1, 42, 0, 0.1);
    test_dropout(100003, -7, 123456789, 0.5);
    test_dropout(4097, 0x5DEECE66DL, 1L << 40, 0.9);
    test_scatter_add_rows(1, 3, 2, false);
    test_scatter_add_rows(300, 129, 50, false);
    test_scatter_add_rows(77, 40, 9, true);
    test_reductions(0, -1);
    test_reductions(1, 0);
    test_reductions(1000, 999);
    test_reductions(3000017, 1234567);
    test_fold_first_index();
    test_soft_routing(1, 1, 1.0f);
    test_soft_routing(37, 8, 0.5f);
    test_soft_routing(500, 300, 2.0f);
    test_softmax_rows(1, 1);
    test_softmax_rows(37, 8);
    test_softmax_rows(1000, 300);
    test_count_experts(1, 4, false);
    test_count_experts(10000, 64, false);
    test_count_experts(777, 8, true);
    test_routing_backward(1, 1, 4, 1.0);
    test_routing_backward(37, 2, 8, 0.5);
    test_routing_backward(500, 8, 64, 2.0);
    //                      E  used  bound  N    K    bias  emptyEvery backwardInput
    test_grouped_gemm_table(1, 1, 1, 64, 64, false, 0, false);
    test_grouped_gemm_table(4, 300, 300, 200, 136, true, 0, false);
    test_grouped_gemm_table(8, 1000, 1100, 130, 77, true, 3, false);
    test_grouped_gemm_table(1, 1, 1, 64, 64, false, 0, true);
    test_grouped_gemm_table(4, 300, 300, 200, 136, false, 0, true);  // both % 8 == 0: the 16-byte path
    test_grouped_gemm_table(8, 1000, 1100, 130, 77, false, 3, true); // guarded path, empty experts
    test_grouped_gemm_table(16, 129, 129, 128, 32, false, 2, true);
    test_grouped_gemm_table(3, 4100, 4100, 512, 256, false, 0, true);
    test_grouped_weight_grad(1, 1, 1, 5, 3, 0);
    test_grouped_weight_grad(4, 300, 310, 70, 130, 0);
    test_grouped_weight_grad(8, 500, 500, 64, 64, 3);
    test_expert_bias(1, 1, 1, 7, 0);
    test_expert_bias(8, 300, 330, 129, 3);
    test_expert_bias(16, 100, 100, 64, 2);
    test_expert_rows(1, 1, 1, 5, 0);
    test_expert_rows(8, 300, 330, 129, 3);
    test_expert_rows(16, 1000, 1000, 64, 2);
    test_cross_entropy_mean(1, 1, true, false, false);
    test_cross_entropy_mean(37, 1000, true, false, false);
    test_cross_entropy_mean(37, 1000, false, true, false);
    test_cross_entropy_mean(9, 32003, true, false, false);
    test_cross_entropy_mean(4, 10, true, false, true);
    test_adamw_step(1, true);
    test_adamw_step(100003, true);
    test_adamw_step(1000, false);

    test_arguments();

    printf("%d passed, %d failed\n", passes, failures);
    return failures > 255 ? 255 : failures;
}
