// Winograd F(m x m, 3 x 3), the heavy part, written once over a vector width and
// compiled per target by conv_<isa>.cpp (inside its namespace and target region,
// after core/simd.h defined V and kernels/winograd_transforms.h defined Wino<m>).
// Includes nothing itself. The entry points, the choice of m and the kernel
// transform are in winograd.cpp.
//
// The transforms run over channels: a sample chunk is first copied to channel-last
// (NHWC, channels padded to a multiple of W, a zero border so every tile's window is
// inside), so each tile's (m+2)^2 patch pixels are
// W-channel vector loads, and the 1-D transforms (winograd_transforms.h) run on
// vectors: W channels of a tile at once. (Transforming tile by tile in NCHW read 36
// scattered values per tile and channel: 57% of the time went to the transforms.)
// A block's transformed tiles are stored tile-major ([tile][a][channel]: each
// transform reads and writes one contiguous run; 36 interleaved streams, one per a,
// were slower), and its (m+2)^2 products are
//   forward      M[tt][a] (Op) = sum_c V[tt][a][c] U[a][c] (Op)   on cv_tile, U: (A^2, Cp, Op)
//   weight grad  dU[a] (Op x Cp) += Wt[a]^T (Op x tiles) @ V[a] (tiles x Cp)   on BLAS
// and the outputs are copied back to NCHW (+ bias).

// xt (S, Hp, Wp, Cp) = x (S, C, H, W) channel-last at rows top.., columns left..,
// zero around it and in the channels past C (so the tile transforms read every
// window unchecked: the border tiles' checked loads took half of wg_input's time);
// and when csum is not null, csum (S, Cp) = each sample's sums over H x W (the bias
// gradient's terms, added while the sample's pixels are in registers instead of in
// another pass over x).
void wg_to_nhwc(const float* x, index_t S, index_t C, index_t H, index_t W, index_t Cp, index_t top, index_t left,
                index_t Hp, index_t Wp, float* xt, float* csum = nullptr) {
    const index_t HW = H * W, cf = C / V::W * V::W, pf = HW / V::W * V::W;
    std::vector<index_t> off(static_cast<std::size_t>(HW));  // pixel p's offset in a sample's xt
    for (index_t p = 0; p < HW; ++p) off[std::size_t(p)] = ((p / W + top) * Wp + p % W + left) * Cp;
    const bool par = max_threads() > 1 && !in_parallel() && S > 1 && double(S) * C * HW > 262144.0;
#pragma omp parallel for schedule(static) if (par)
    for (index_t n = 0; n < S; ++n) {
        const float* src = x + n * C * HW;
        float* dst = xt + n * Hp * Wp * Cp;
        // the border: rows above and below, then the columns beside each image row
        std::fill(dst, dst + top * Wp * Cp, 0.0f);
        std::fill(dst + (top + H) * Wp * Cp, dst + Hp * Wp * Cp, 0.0f);
        for (index_t r = top; r < top + H; ++r) {
            float* row = dst + r * Wp * Cp;
            std::fill(row, row + left * Cp, 0.0f);
            std::fill(row + (left + W) * Cp, row + Wp * Cp, 0.0f);
        }
        alignas(64) float blk[V::W * V::W];
        for (index_t c0 = 0; c0 < cf; c0 += V::W) {
            typename V::R acc[2] = {V::zero(), V::zero()};
            for (index_t p0 = 0; p0 < pf; p0 += V::W) {
                V::transpose(src + c0 * HW + p0, HW, blk, V::W);
                for (int j = 0; j < V::W; ++j) {
                    const typename V::R v = V::load(blk + j * V::W);
                    V::store(dst + off[std::size_t(p0 + j)] + c0, v);
                    acc[j & 1] = V::add(acc[j & 1], v);
                }
            }
            if (csum) V::store(csum + n * Cp + c0, V::add(acc[0], acc[1]));
        }
        for (index_t c = 0; c < Cp; ++c) {  // the pixels past the last block, the channels past cf
            float sum = 0.0f;
            for (index_t p = c < cf ? pf : 0; p < HW; ++p) {
                const float v = c < C ? src[c * HW + p] : 0.0f;
                dst[off[std::size_t(p)] + c] = v;
                sum += v;
            }
            if (csum) csum[n * Cp + c] = (c < cf ? csum[n * Cp + c] : 0.0f) + sum;
        }
    }
}

// y (S, O, HW) = yt (S, HW, Op) channel-first, + bias
void wg_to_nchw(const float* yt, index_t S, index_t O, index_t HW, index_t Op, const float* bias, float* y) {
    const index_t of = O / V::W * V::W, pf = HW / V::W * V::W;
    const bool par = max_threads() > 1 && !in_parallel() && S > 1 && double(S) * O * HW > 262144.0;
#pragma omp parallel for schedule(static) if (par)
    for (index_t n = 0; n < S; ++n) {
        const float* src = yt + n * HW * Op;
        float* dst = y + n * O * HW;
        for (index_t p0 = 0; p0 < pf; p0 += V::W)
            for (index_t o0 = 0; o0 < of; o0 += V::W) V::transpose(src + p0 * Op + o0, Op, dst + o0 * HW + p0, HW);
        for (index_t o = 0; o < of; ++o)
            for (index_t p = pf; p < HW; ++p) dst[o * HW + p] = src[p * Op + o];
        for (index_t o = of; o < O; ++o)
            for (index_t p = 0; p < HW; ++p) dst[o * HW + p] = src[p * Op + o];
        if (bias)
            for (index_t o = 0; o < O; ++o) {
                const float b = bias[o];
                float* q = dst + o * HW;
                for (index_t p = 0; p < HW; ++p) q[p] += b;
            }
    }
}

// The tiles of one sample chunk: th x tw tiles of m x m outputs per sample,
// numbered t = (n * th + i) * tw + j.
// H x W: the input copy's padded size (pt, pl: where the first window starts, 0 when
// the copy is padded for every window); OH x OW: the output's. GH x GW, gt, gl: the
// weight gradient's padded copy of gy (wg_grad) and where gy starts in it.
struct WTiles {
    index_t S, H, W, pt, pl, OH, OW, th, tw;
    index_t GH = 0, GW = 0, gt = 0, gl = 0;
    index_t count() const { return S * th * tw; }
};

// V[tt][a][Cp] = (B^T d B)[a] of the patches d of tiles t0 .. t0+cnt, from xt (S, H, W, Cp);
// d is the (m+2)^2 window at (i*m - pt, j*m - pl), inside the copy (wg_to_nhwc padded it).
template <int M>
void wg_input(const float* xt, const WTiles& tl, index_t t0, index_t cnt, index_t Cp, index_t Tb, float* Vb) {
    constexpr int A = Wino<M>::A, A2 = A * A;
    typename V::R d[A2], t[A2], v[A2];
    const index_t plane = tl.th * tl.tw;
    for (index_t tt = 0; tt < cnt; ++tt) {
        const index_t t_ = t0 + tt, n = t_ / plane, r = t_ % plane;
        const index_t r0 = (r / tl.tw) * M - tl.pt, c0 = (r % tl.tw) * M - tl.pl;
        const float* img = xt + (n * tl.H * tl.W + r0 * tl.W + c0) * Cp;
        for (index_t cg = 0; cg < Cp; cg += V::W) {
            for (int i = 0; i < A; ++i)
                for (int j = 0; j < A; ++j) d[i * A + j] = V::load(img + (i * tl.W + j) * Cp + cg);
            for (int j = 0; j < A; ++j) Wino<M>::bt(d + j, A, t + j, A);      // columns
            for (int i = 0; i < A; ++i) Wino<M>::bt(t + i * A, 1, v + i * A, 1);  // rows
            float* dst = Vb + tt * A2 * Cp + cg;
            for (int a = 0; a < A2; ++a) V::store(dst + index_t(a) * Cp, v[a]);
        }
    }
}

// yt (S, OH, OW, Op) at the tiles t0 .. t0+cnt = A^T M[tt][a] A, clipped to the image.
template <int M>
void wg_output(const float* Mb, const WTiles& tl, index_t t0, index_t cnt, index_t Op, index_t Tb, float* yt) {
    constexpr int A = Wino<M>::A, A2 = A * A;
    typename V::R m[A2], t[M * A], out[M * M];
    const index_t plane = tl.th * tl.tw;
    for (index_t tt = 0; tt < cnt; ++tt) {
        const index_t t_ = t0 + tt, n = t_ / plane, r = t_ % plane;
        const index_t r0 = (r / tl.tw) * M, c0 = (r % tl.tw) * M;
        const int rows = int(std::min<index_t>(M, tl.OH - r0)), cols = int(std::min<index_t>(M, tl.OW - c0));
        float* img = yt + n * tl.OH * tl.OW * Op;
        for (index_t og = 0; og < Op; og += V::W) {
            const float* src = Mb + tt * A2 * Op + og;
            for (int a = 0; a < A2; ++a) m[a] = V::load(src + index_t(a) * Op);
            for (int j = 0; j < A; ++j) Wino<M>::at(m + j, A, t + j, A);        // columns: M x A
            for (int i = 0; i < M; ++i) Wino<M>::at(t + i * A, 1, out + i * M, 1);  // rows: M x M
            for (int i = 0; i < rows; ++i)
                for (int j = 0; j < cols; ++j) V::store(img + ((r0 + i) * tl.OW + c0 + j) * Op + og, out[i * M + j]);
        }
    }
}

// Wt[tt][a][Op] = (A dY A^T)[a] of the output-gradient tiles (m x m, zero past the image),
// from gy's padded copy gyt (tl.GH x tl.GW, gy at tl.gt, tl.gl).
template <int M>
void wg_grad(const float* gyt, const WTiles& tl, index_t t0, index_t cnt, index_t Op, index_t Tb, float* Wt) {
    constexpr int A = Wino<M>::A, A2 = A * A;
    typename V::R d[M * M], t[A * M], v[A2];
    const index_t plane = tl.th * tl.tw;
    for (index_t tt = 0; tt < cnt; ++tt) {
        const index_t t_ = t0 + tt, n = t_ / plane, r = t_ % plane;
        const index_t r0 = (r / tl.tw) * M, c0 = (r % tl.tw) * M;
        const float* img = gyt + (n * tl.GH * tl.GW + (r0 + tl.gt) * tl.GW + c0 + tl.gl) * Op;
        for (index_t og = 0; og < Op; og += V::W) {
            for (int i = 0; i < M; ++i)  // past OH x OW: the copy's zero border
                for (int j = 0; j < M; ++j) d[i * M + j] = V::load(img + (i * tl.GW + j) * Op + og);
            for (int j = 0; j < M; ++j) Wino<M>::a(d + j, M, t + j, M);        // columns: A x M
            for (int i = 0; i < A; ++i) Wino<M>::a(t + i * M, 1, v + i * A, 1);  // rows: A x A
            float* dst = Wt + tt * A2 * Op + og;
            for (int a = 0; a < A2; ++a) V::store(dst + index_t(a) * Op, v[a]);
        }
    }
}

// yt (S, OH, OW, Op) = the tiles of xt (S, H, W, Cp) correlated with U (A^2, Cp, Op).
// The batched products M[tt][a] = sum_c V[tt][a][c] U[a][c] run on the channel-vector
// micro-kernel (cv_tile) straight from the transformed tiles: BLAS would pack the tiles'
// strided rows on every call (a fifth of the time at 64 -> 256 channels).
template <int M>
void wg_tiles_forward(const float* xt, const WTiles& tl, const float* U, index_t Cp, index_t Op, float* yt) {
    constexpr int A = M + 2, A2 = A * A;
    const index_t Tb = wino_block_tiles(A2, Cp, Op), T = tl.count(), nblocks = (T + Tb - 1) / Tb;
    std::vector<index_t> rows(static_cast<std::size_t>(Tb)), chans(static_cast<std::size_t>(Cp));
    for (index_t i = 0; i < Tb; ++i) rows[std::size_t(i)] = i * A2 * Cp;
    for (index_t c = 0; c < Cp; ++c) chans[std::size_t(c)] = c;
    const bool par = max_threads() > 1 && !in_parallel() && nblocks > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (index_t b = 0; b < nblocks; ++b) {
        const index_t t0 = b * Tb, cnt = std::min(Tb, T - t0);
        float* Vb = scratch<float>(0, std::size_t(A2 * Tb * Cp));
        float* Mb = scratch<float>(1, std::size_t(A2 * Tb * Op));
        wg_input<M>(xt, tl, t0, cnt, Cp, Tb, Vb);
        for (int a = 0; a < A2; ++a)
            cv_sweep(Vb + index_t(a) * Cp, rows.data(), cnt, U + index_t(a) * Cp * Op, Cp, 0, chans.data(), Cp,
                     Mb + index_t(a) * Op, A2 * Op, Op, true);
        wg_output<M>(Mb, tl, t0, cnt, Op, Tb, yt);
    }
}

// dU (parts, A^2, Op, Cp) += the tiles of this chunk, whose first tile is global tile g0:
// global block b (Tb tiles of the whole batch, in tile order) goes to the part p whose
// fixed range of blocks holds it, each part summing its blocks in order, so the sums
// do not depend on the thread count (nor on how the batch is cut into chunks). These
// products stay on BLAS: their reduction runs over tiles, A^2 rows apart, which
// cv_tile read in place 1.3x slower than BLAS packs them.
template <int M>
void wg_tiles_weight(const float* xt, const float* gyt, const WTiles& tl, index_t g0, index_t total_tiles,
                     index_t Cp, index_t Op, float* dU, index_t parts, index_t Tb) {
    constexpr int A = M + 2, A2 = A * A;
    const index_t UO = index_t(A2) * Op * Cp, total = (total_tiles + Tb - 1) / Tb, g1 = g0 + tl.count();
    const bool par = max_threads() > 1 && !in_parallel() && parts > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (index_t p = 0; p < parts; ++p) {
        const index_t b_lo = chunk_begin(total, parts, p), b_hi = chunk_begin(total, parts, p + 1);
        float* Vb = scratch<float>(0, std::size_t(A2 * Tb * Cp));
        float* Wt = scratch<float>(1, std::size_t(A2 * Tb * Op));
        for (index_t b = std::max(b_lo, g0 / Tb); b < b_hi; ++b) {
            const index_t lo = std::max(g0, b * Tb), hi = std::min(g1, std::min((b + 1) * Tb, total_tiles));
            if (lo >= g1) break;
            if (lo >= hi) continue;
            const index_t cnt = hi - lo;
            wg_input<M>(xt, tl, lo - g0, cnt, Cp, Tb, Vb);
            wg_grad<M>(gyt, tl, lo - g0, cnt, Op, Tb, Wt);
            for (int a = 0; a < A2; ++a)
                gemm<float>(true, false, Op, Cp, cnt, 1.0f, Wt + index_t(a) * Op, A2 * Op, Vb + index_t(a) * Cp,
                            A2 * Cp, 1.0f, dU + p * UO + index_t(a) * Op * Cp, Cp);
        }
    }
}

// dU (A^2, Op, Cp) += the tiles of one chunk (a part's share, its own thread): blocks of
// Tb tiles in tile order, the chunk's first tile starting the first block.
template <int M>
void wg_chunk_weight(const float* xt, const float* gyt, const WTiles& tl, index_t Cp, index_t Op, index_t Tb,
                     float* dU) {
    constexpr int A = M + 2, A2 = A * A;
    float* Vb = scratch<float>(0, std::size_t(A2 * Tb * Cp));
    float* Wt = scratch<float>(1, std::size_t(A2 * Tb * Op));
    for (index_t t0 = 0; t0 < tl.count(); t0 += Tb) {
        const index_t cnt = std::min(Tb, tl.count() - t0);
        wg_input<M>(xt, tl, t0, cnt, Cp, Tb, Vb);
        wg_grad<M>(gyt, tl, t0, cnt, Op, Tb, Wt);
        for (int a = 0; a < A2; ++a)
            gemm<float>(true, false, Op, Cp, cnt, 1.0f, Wt + index_t(a) * Op, A2 * Op, Vb + index_t(a) * Cp, A2 * Cp,
                        1.0f, dU + index_t(a) * Op * Cp, Cp);
    }
}

// y (N, O, OH, OW) = the 3x3 correlation of x (N, C, H, W) (pads pt/pl on the top/left;
// the output size gives the rest) with U (A^2, Op, Cp) (+ bias).
//
// With enough samples each thread takes whole chunks of a few samples through every
// stage (copy in, tiles, copy out), so the chunk's copies and tiles stay in its core's
// L2: 1.2-1.35x faster at one thread than stage by stage over the whole batch, whose
// channel-last copies went out to L3 and back between stages. Few large samples: one
// chunk at a time, the threads splitting each stage.
template <int M>
void wg_forward(const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl, const float* U,
                index_t O, const float* bias, float* y, index_t OH, index_t OW) {
    const index_t Cp = (C + V::W - 1) / V::W * V::W, Op = (O + V::W - 1) / V::W * V::W;
    const index_t th = (OH + M - 1) / M, tw = (OW + M - 1) / M;
    const index_t Hp = th * M + 2, Wp = tw * M + 2;  // every window inside (OH >= H + pt - 2)
    const index_t per = Hp * Wp * Cp + OH * OW * Op;
    const index_t nt = in_parallel() ? 1 : max_threads();
    const index_t S = wino_chunk_samples(N, per, nt);
    const index_t chunks = (N + S - 1) / S;
    const bool by_chunk = nt == 1 || chunks >= 2 * nt;
    const index_t Sc = by_chunk ? S : wino_big_chunk_samples(N, per);
    auto run = [&](index_t n0, index_t s) {
        float* xt = scratch<float>(2, std::size_t(s * per));
        float* yt = xt + s * Hp * Wp * Cp;
        wg_to_nhwc(x + n0 * C * H * W, s, C, H, W, Cp, pt, pl, Hp, Wp, xt);
        wg_tiles_forward<M>(xt, WTiles{s, Hp, Wp, 0, 0, OH, OW, th, tw}, U, Cp, Op, yt);
        wg_to_nchw(yt, s, O, OH * OW, Op, bias, y + n0 * O * OH * OW);
    };
    const index_t nchunks = (N + Sc - 1) / Sc;
#pragma omp parallel for schedule(dynamic, 1) if (by_chunk && nt > 1)
    for (index_t c = 0; c < nchunks; ++c) run(c * Sc, std::min(Sc, N - c * Sc));
}

// Both gradients of y = conv3x3(x), sharing the channel-last copy of gy:
//   gx (N, C, H, W) = the forward form on gy (pads 2 - p) with Ud (A^2, Cp, Op), the
//                     rotated, channel-swapped kernel (skipped when gx is null);
//   dU (parts, A^2, Op, Cp) the weight gradient's transformed sums (when dU is not null);
//   gb (O) += the bias gradient, gy summed over samples and pixels (when not null).
// The plan (conv_isa.h: wino_backward_plan, also winograd.cpp's) fixes the chunks and
// parts whatever the thread count, so the sums have the same bits for any: by chunk,
// part p sums its fixed range of chunks in order, one thread taking each chunk through
// every stage as wg_forward does; otherwise, a chunk at a time, global block b (Tb tiles
// of the whole batch, in tile order) goes to the part whose fixed range of blocks holds it.
template <int M>
void wg_backward(const float* gy, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt,
                 index_t pl, index_t O, index_t OH, index_t OW, const float* Ud, float* gx, float* dU,
                 const WinoBackPlan& plan, double* gb) {
    const index_t Cp = (C + V::W - 1) / V::W * V::W, Op = (O + V::W - 1) / V::W * V::W;
    const index_t th = (OH + M - 1) / M, tw = (OW + M - 1) / M, per = th * tw;
    const index_t dth = (H + M - 1) / M, dtw = (W + M - 1) / M;
    const index_t gt = plan.gt, gl = plan.gl, GH = plan.GH, GW = plan.GW, Hp = plan.Hp, Wp = plan.Wp, xs = plan.xs;
    const index_t S = plan.S, parts = plan.parts, Tb = plan.Tb, UO = index_t((M + 2) * (M + 2)) * Op * Cp;
    std::vector<float> sums(gb ? std::size_t(N * Op) : 0);  // per sample, added in sample order at the end
    // one chunk of s samples from n0: gy's copy (+ its sums), gx, x's copy; dUp: its part
    // of the weight gradient (by chunk) or null (the caller sums the chunk's blocks)
    auto stages = [&](index_t n0, index_t s, float* dUp) {
        float* gyt = scratch<float>(2, std::size_t(s * (GH * GW * Op + xs)));
        float* xt = gyt + s * GH * GW * Op;  // x's copy (weight gradient), or gx's (data gradient)
        wg_to_nhwc(gy + n0 * O * OH * OW, s, O, OH, OW, Op, gt, gl, GH, GW, gyt, gb ? sums.data() + n0 * Op : nullptr);
        if (gx) {
            wg_tiles_forward<M>(gyt, WTiles{s, GH, GW, 0, 0, H, W, dth, dtw}, Ud, Op, Cp, xt);
            wg_to_nchw(xt, s, C, H * W, Cp, nullptr, gx + n0 * C * H * W);
        }
        if (dU) {
            wg_to_nhwc(x + n0 * C * H * W, s, C, H, W, Cp, pt, pl, Hp, Wp, xt);
            const WTiles tl{s, Hp, Wp, 0, 0, OH, OW, th, tw, GH, GW, gt, gl};
            if (dUp)
                wg_chunk_weight<M>(xt, gyt, tl, Cp, Op, Tb, dUp);
            else
                wg_tiles_weight<M>(xt, gyt, tl, n0 * per, N * per, Cp, Op, dU, parts, Tb);
        }
    };
    if (plan.by_chunk) {
        const index_t chunks = (N + S - 1) / S;
        const bool par = max_threads() > 1 && !in_parallel() && parts > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (index_t p = 0; p < parts; ++p)
            for (index_t c = chunk_begin(chunks, parts, p); c < chunk_begin(chunks, parts, p + 1); ++c)
                stages(c * S, std::min(S, N - c * S), dU ? dU + p * UO : nullptr);
    } else {
        for (index_t n0 = 0; n0 < N; n0 += S) stages(n0, std::min(S, N - n0), nullptr);
    }
    if (gb)  // in sample order: the same sum for any thread count and chunking
        for (index_t n = 0; n < N; ++n)
            for (index_t o = 0; o < O; ++o) gb[o] += double(sums[std::size_t(n * Op + o)]);
}
