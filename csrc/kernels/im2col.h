// im2col / col2im for one image (C, H, W) <-> columns (C*kh*kw, OH*OW), rows in
// (c, ki, kj) order as torch's unfold. col2im ACCUMULATES (+=) into the image.
#pragma once
#include "core/common.h"

namespace pcn {

struct Geom {  // one 2-D window geometry; pads are top/left (bottom/right are implied by OH/OW)
    index_t C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW;
    bool is_identity() const {  // 1x1, stride 1, no pad: the columns ARE the image
        return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
    }
};

// ldcol: distance between rows of col (>= OH*OW), so several images can sit side by side.
template <typename T>
void im2col(const T* img, const Geom& g, T* col, index_t ldcol, bool parallel);
template <typename T>
void col2im(const T* col, const Geom& g, index_t ldcol, T* img, bool parallel);

// The batched forms (torch's unfold / fold): x (N, C, H, W) <-> y (N, C*kh*kw, OH*OW).
// fold OVERWRITES y (zeroed, then summed into).
template <typename T>
void unfold(const T* x, index_t N, const Geom& g, T* y);
template <typename T>
void fold(const T* cols, index_t N, const Geom& g, T* y);

}  // namespace pcn
