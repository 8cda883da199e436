// The 1-D Winograd transforms of F(m, 3), m = 2 and 4, for any arithmetic type T
// (float, double or a target's vector type: the vectorised kernels transform W
// channels at once). Included inside a namespace by winograd.cpp and by each
// target's copy of winograd_body.h, so it includes nothing and has no guard.
//
// A 2-D transform is the 1-D one applied to the columns, then to the rows:
//   forward        Y  = A^T [ (G g G^T) (.) (B^T d B) ] A
//   weight grad    dg = G^T [ sum_tiles (A dY A^T) (.) (B^T d B) ] G
// m = 2 uses the points 0, +-1 (and infinity); m = 4 the points 0, +-1/sqrt(2),
// +-sqrt(2) (ncnn's choice since 2023), which round 3-4x better in float32 than
// the textbook 0, +-1, +-2 for the same number of operations. Each function reads
// its n inputs at stride s and writes its outputs at stride so.

template <int M>
struct Wino;

template <>
struct Wino<4> {
    static constexpr int A = 6;
    static constexpr double kS = 1.4142135623730951;  // sqrt(2)
    template <typename T>
    static void bt(const T* r, long s, T* t, long so) {  // B^T r: 6 from 6
        const float S = float(kS);
        const T r0 = r[0], r1 = r[s], r2 = r[2 * s], r3 = r[3 * s], r4 = r[4 * s], r5 = r[5 * s];
        const T a = S * r1 - (0.5f * S) * r3, b = r4 - 2.0f * r2, c = S * r3 - (0.5f * S) * r1, e = r4 - 0.5f * r2;
        t[0] = r0 + r4 - 2.5f * r2;
        t[so] = b - a;
        t[2 * so] = b + a;
        t[3 * so] = e + c;
        t[4 * so] = e - c;
        t[5 * so] = r1 + r5 - 2.5f * r3;
    }
    template <typename T>
    static void at(const T* m, long s, T* y, long so) {  // A^T m: 4 from 6
        const float S = float(kS);
        const T m0 = m[0], m5 = m[5 * s];
        const T p = m[s] + m[2 * s], q = m[s] - m[2 * s], u = m[3 * s] + m[4 * s], v = m[3 * s] - m[4 * s];
        y[0] = m0 + p + u;
        y[so] = (0.5f * S) * q + S * v;
        y[2 * so] = 0.5f * p + 2.0f * u;
        y[3 * so] = m5 + (0.25f * S) * q + (2.0f * S) * v;
    }
    template <typename T>
    static void a(const T* y, long s, T* o, long so) {  // A y: 6 from 4 (the transpose of at)
        const float S = float(kS);
        const T y0 = y[0], y1 = y[s], y2 = y[2 * s], y3 = y[3 * s];
        const T p = y0 + 0.5f * y2, q = (0.5f * S) * y1 + (0.25f * S) * y3, r = y0 + 2.0f * y2,
                t = S * y1 + (2.0f * S) * y3;
        o[0] = y0;
        o[so] = p + q;
        o[2 * so] = p - q;
        o[3 * so] = r + t;
        o[4 * so] = r - t;
        o[5 * so] = y3;
    }
    static void g(const double* g, long s, double* u, long so) {  // G g: 6 from 3 (kernels, in double)
        const double g0 = g[0], g1 = g[s], g2 = g[2 * s];
        u[0] = g0;
        u[so] = -2.0 / 3 * g0 - kS / 3 * g1 - g2 / 3;
        u[2 * so] = -2.0 / 3 * g0 + kS / 3 * g1 - g2 / 3;
        u[3 * so] = g0 / 6 + kS / 6 * g1 + g2 / 3;
        u[4 * so] = g0 / 6 - kS / 6 * g1 + g2 / 3;
        u[5 * so] = g2;
    }
    static void gt(const double* u, long s, double* g, long so) {  // G^T u: 3 from 6 (the transpose of g)
        const double u0 = u[0], u1 = u[s], u2 = u[2 * s], u3 = u[3 * s], u4 = u[4 * s], u5 = u[5 * s];
        g[0] = u0 - 2.0 / 3 * (u1 + u2) + (u3 + u4) / 6;
        g[so] = kS / 3 * (u2 - u1) + kS / 6 * (u3 - u4);
        g[2 * so] = (u3 + u4 - u1 - u2) / 3 + u5;
    }
};

template <>
struct Wino<2> {
    static constexpr int A = 4;
    template <typename T>
    static void bt(const T* r, long s, T* t, long so) {
        const T r0 = r[0], r1 = r[s], r2 = r[2 * s], r3 = r[3 * s];
        t[0] = r0 - r2;
        t[so] = r1 + r2;
        t[2 * so] = r2 - r1;
        t[3 * so] = r1 - r3;
    }
    template <typename T>
    static void at(const T* m, long s, T* y, long so) {
        const T m1 = m[s], m2 = m[2 * s];
        y[0] = m[0] + m1 + m2;
        y[so] = m1 - m2 - m[3 * s];
    }
    template <typename T>
    static void a(const T* y, long s, T* o, long so) {
        const T y0 = y[0], y1 = y[s];
        o[0] = y0;
        o[so] = y0 + y1;
        o[2 * so] = y0 - y1;
        o[3 * so] = -y1;
    }
    static void g(const double* g, long s, double* u, long so) {
        const double g0 = g[0], g1 = g[s], g2 = g[2 * s];
        u[0] = g0;
        u[so] = (g0 + g1 + g2) / 2;
        u[2 * so] = (g0 - g1 + g2) / 2;
        u[3 * so] = g2;
    }
    static void gt(const double* u, long s, double* g, long so) {
        const double u0 = u[0], u1 = u[s], u2 = u[2 * s], u3 = u[3 * s];
        g[0] = u0 + (u1 + u2) / 2;
        g[so] = (u1 - u2) / 2;
        g[2 * so] = (u1 + u2) / 2 + u3;
    }
};
