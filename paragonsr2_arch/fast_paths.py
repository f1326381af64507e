"""Optimised inference path of ParagonSR2: same function as the spec, fewer passes over memory.

The module forwards in ``blocks.py``/``layers.py`` are the straightforward implementation of
the spec; ``reference_mode()`` makes the network use them. This path (the default for
inference) computes the same values with:

- channels-last activations, so 1x1 convs are plain GEMMs, depthwise convs vectorise over
  channels and the (B, H, W, C) views of attention are free;
- per-channel affine maps folded into the neighbouring linear layer (RMSNorm scale/bias into
  the following 1x1 conv / Linear, LayerScale gamma and detail_gain into the preceding one;
  pro's token-dictionary attention reduced to two small matrices); a fold is exact up to
  float rounding because the layer it is folded into has no spatial support (1x1) — or, for
  the window attention's zero padding, the padded tokens are given the unfolded value;
- window attention as one gather (pad + roll + partition), fused SDPA, one gather back;
- the HR head ``conv_out(PixelShuffle(up.0(z))) * detail_gain`` as one 5x5 conv at LR to
  3*s*s channels plus the base path's polyphase phases, then one PixelShuffle. Only the
  outermost HR pixel ring differs in exact arithmetic (zero padding at HR vs at LR); it is
  recomputed exactly from thin strips.

Folded weights are cached on the modules (plain attributes, never in the state dict) and
rebuilt when a parameter changes (data pointer, in-place version counter, dtype, device).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .blocks import FP16_MAX, NanoBlock, PhotoBlock, ProBlock, StreamBlock
from .mode import fast_enabled, reference_mode

__all__ = ["decode", "fast_enabled", "reference_mode", "usable"]

_CL = torch.channels_last


def usable(model, x: torch.Tensor) -> bool:
    """The fast path is for inference: not in training mode, not when autograd must record."""
    if not fast_enabled() or model.training:
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in model.parameters())))


# -- cache of derived weights -------------------------------------------------------------------


def _signature(tensors, extra) -> tuple:
    sig = []
    for t in tensors:
        try:
            version = t._version
        except RuntimeError:  # inference tensors have no version counter
            version = -1
        sig.append((t.data_ptr(), version, t.dtype, t.device))
    return tuple(sig) + tuple(extra)


def _cached(module, name: str, tensors, extra, build):
    """build() once per (weights, extra); stored as a plain attribute, not in the state dict."""
    key = _signature(tensors, extra)
    attr = "_fast_" + name
    entry = module.__dict__.get(attr)
    if entry is not None and entry[0] == key:
        return entry[1]
    with torch.no_grad(), torch.inference_mode(False):
        value = build()
    module.__dict__[attr] = (key, value)
    return value


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double()


def _cast(dtype, *tensors):
    return tuple(t.to(dtype).contiguous() for t in tensors)


# -- small helpers on channels-last tensors -----------------------------------------------------


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_contiguous(memory_format=_CL) else x.contiguous(memory_format=_CL)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) channels-last -> (B*H*W, C) view (a view: in-place writes reach x)."""
    return _cl(x).permute(0, 2, 3, 1).view(-1, x.shape[1])


def _unflat(y: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    return y.view(b, h, w, -1).permute(0, 3, 1, 2)


def _rms_normalise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean_c(x^2) + eps), statistic in float32 (scale and bias are folded elsewhere)."""
    c = x.shape[1]
    sq = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32).square_()
    inv = torch.rsqrt(sq.div_(c).add_(eps)).to(x.dtype)
    return x * inv


def _fold_norm_into(weight: torch.Tensor, bias: torch.Tensor, norm) -> tuple[torch.Tensor, torch.Tensor]:
    """W (out, in) applied to scale*x + b  ==  (W*scale) x + (W b + bias)."""
    w = _f64(weight).reshape(weight.shape[0], -1)
    s = _f64(norm.scale).reshape(-1)
    nb = _f64(norm.bias).reshape(-1)
    return w * s, _f64(bias) + w @ nb


# -- blocks --------------------------------------------------------------------------------------


def _mlp_weights(block, norm, gamma, dtype):
    def build():
        c1w, c1b = block.conv1.weight, block.conv1.bias
        if norm is not None:
            w1, b1 = _fold_norm_into(c1w, c1b, norm)
        else:
            w1, b1 = _f64(c1w).reshape(c1w.shape[0], -1), _f64(c1b)
        g = _f64(gamma).reshape(-1)
        w2 = _f64(block.conv2.weight).reshape(block.conv2.weight.shape[0], -1) * g[:, None]
        b2 = _f64(block.conv2.bias) * g
        w1 = w1[:, :, None, None]
        w2 = w2[:, :, None, None]
        return _cast(dtype, w1, b1, block.dw.weight, block.dw.bias, w2, b2)

    params = [
        block.conv1.weight,
        block.conv1.bias,
        block.dw.weight,
        block.dw.bias,
        block.conv2.weight,
        block.conv2.bias,
        gamma,
    ]
    if norm is not None:
        params += [norm.scale, norm.bias]
    return _cached(block, "mlp", params, (dtype,), build)


def _no_op() -> None:
    pass


def _mlp(block, x, norm, gamma, between=_no_op):
    """x + gamma * conv2(gelu(dw(conv1(norm(x)))))."""
    w1, b1, wd, bd, w2, b2 = _mlp_weights(block, norm, gamma, x.dtype)
    h = _rms_normalise(x, norm.eps) if norm is not None else x
    h = F.conv2d(h, w1, b1)
    h = F.conv2d(h, wd, bd, padding=1, groups=wd.shape[0])
    between()
    h = torch.ops.aten.gelu_(h)  # in place: one less activation-sized buffer
    return F.conv2d(h, w2, b2).add_(x)


def nano_block(block: NanoBlock, x):
    return _mlp(block, x, None, block.scale.gamma)


def stream_block(block: StreamBlock, x):
    def build():
        c = block.dw1.weight.shape[0]
        wf = _f64(block.fuse.weight).reshape(c, 2 * c)
        g = _f64(block.scale.gamma).reshape(-1)
        wo = _f64(block.out.weight).reshape(c, -1) * g[:, None]
        if block.out.bias is None:
            raise ValueError("StreamBlock.out has no bias: not a ParagonSR2 stream block")
        return _cast(
            x.dtype,
            wf[:, :c, None, None],
            wf[:, c:].t(),
            block.fuse.bias,
            block.dw1.weight,
            block.dw1.bias,
            block.dw3.weight,
            block.dw3.bias,
            block.proj.weight,
            block.proj.bias,
            block.gate.weight,
            block.gate.bias,
            wo[:, :, None, None],
            _f64(block.out.bias) * g,
        )

    params = [
        p for m in (block.dw1, block.dw3, block.fuse, block.proj, block.gate, block.out) for p in (m.weight, m.bias)
    ] + [block.scale.gamma]
    (wfa, wfb_t, bf, w1, b1, w3, b3, wp, bp, wg, bg, wo, bo) = _cached(block, "w", params, (x.dtype,), build)
    c = x.shape[1]
    # fuse(cat(dw1(x), dw3(x))) as two GEMMs accumulating into one buffer: no concatenation.
    y = _cl(F.conv2d(F.conv2d(x, w1, b1, padding=1, groups=c), wfa, bf))
    _flat(y).addmm_(_flat(F.conv2d(x, w3, b3, padding=3, dilation=3, groups=c)), wfb_t)
    y = F.conv2d(F.conv2d(y, wp, bp), wg, bg, padding=1, groups=wg.shape[0])
    a, b = y.chunk(2, dim=1)
    prod = torch.empty(a.shape, dtype=torch.float32, device=x.device, memory_format=_CL)
    if x.dtype == torch.float32:
        torch.mul(a, b, out=prod)
    else:
        torch.mul(a.float(), b.float(), out=prod)
    prod = prod.clamp_(-FP16_MAX, FP16_MAX).to(x.dtype)
    return F.conv2d(prod, wo, bo).add_(x)


# -- window attention ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)  # interior and edge tile shapes x the two shifts
def _shared_window_index(h: int, w: int, ws: int, shift: int, batch: int, device):
    """One index per shape and shift, shared by every block (it depends on nothing else)."""
    with torch.no_grad(), torch.inference_mode(False):
        return _window_index(h, w, ws, shift, batch, device)


def _window_index(h: int, w: int, ws: int, shift: int, batch: int, device):
    """Token gather for pad + roll(-shift) + partition, its inverse for the real tokens, and
    the windowed positions that hold padding (None when there is none).

    Rows index a (batch*(h*w) + 1)-row table whose last row stands for the padding token.
    """
    hp, wp = h + (-h) % ws, w + (-w) % ws
    rows = (torch.arange(hp) + shift) % hp
    cols = (torch.arange(wp) + shift) % wp
    # rolled grid position (i, j) holds padded position (rows[i], cols[j]); windows row-major
    rr = rows.view(hp // ws, 1, ws, 1).expand(hp // ws, wp // ws, ws, ws)
    cc = cols.view(1, wp // ws, 1, ws).expand(hp // ws, wp // ws, ws, ws)
    real = (rr < h) & (cc < w)
    src = torch.where(real, rr * w + cc, torch.full_like(rr, -1)).reshape(-1)
    order = torch.arange(src.numel())
    inv = torch.empty(h * w, dtype=torch.long)
    inv[src[src >= 0]] = order[src >= 0]
    n_win = src.numel()
    pad_row = batch * h * w
    gather = torch.cat([torch.where(src >= 0, src + i * h * w, torch.full_like(src, pad_row)) for i in range(batch)])
    scatter = torch.cat([inv + i * n_win for i in range(batch)])
    padded = (gather == pad_row).nonzero().flatten()
    return gather.to(device), scatter.to(device), (padded.to(device) if padded.numel() else None)


# With a cancel hook, SDPA (the largest single operation: ~60 GFLOP per block on a 1024 px
# tile) runs in this many groups of windows with the hook between them.
SDPA_CHUNKS = 8


def _sdpa_in_chunks(q, k, v, between):
    """scaled_dot_product_attention over groups of windows, ``between()`` after each group.
    Windows are independent batch entries, so every value is the one of a single call (the
    staged-forward test checks this bit for bit); the result has the single call's layout."""
    n, heads, tokens, _ = q.shape
    out = q.new_empty(n, tokens, heads, v.shape[-1]).transpose(1, 2)
    step = max(1, -(-n // SDPA_CHUNKS))
    for i in range(0, n, step):
        out[i : i + step] = F.scaled_dot_product_attention(q[i : i + step], k[i : i + step], v[i : i + step])
        if i + step < n:
            between()
    return out


def _attention(owner, x, norm, attn, gamma, between=_no_op):
    """x + gamma * to_BCHW(attn(to_BHWC(norm(x)))) with x channels-last."""
    b, c, h, w = x.shape
    ws, heads = attn.window_size, attn.num_heads

    def build():
        wq, bq = _fold_norm_into(attn.qkv.weight, attn.qkv.bias, norm)
        g = _f64(gamma).reshape(-1)
        wo = _f64(attn.proj.weight) * g[:, None]
        # a padded token is a zero *after* the norm: its qkv is the unfolded bias
        return _cast(x.dtype, wq, bq, attn.qkv.bias, wo, _f64(attn.proj.bias) * g)

    params = [attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, norm.scale, norm.bias, gamma]
    wq, bq, pad_qkv, wo, bo = _cached(owner, "attn", params, (x.dtype,), build)
    gather, scatter, padded = _shared_window_index(h, w, ws, attn.shift, b, x.device)

    # Partition the C-wide normalised tokens (not the 3C-wide qkv): a third of the copying.
    tokens = _flat(_rms_normalise(x, norm.eps))  # (B*H*W, C)
    if padded is not None:
        tokens = torch.cat([tokens, tokens.new_zeros(1, c)], dim=0)
    qkv = F.linear(tokens.index_select(0, gather), wq, bq)  # (Bw*N, 3C), windows in order
    if padded is not None:
        qkv[padded] = pad_qkv  # a padded token is zero after the norm: qkv gives the plain bias
    win = qkv.view(-1, ws * ws, 3, heads, c // heads)
    q, k, v = (t.transpose(1, 2) for t in win.unbind(2))
    between()
    # (Bw, heads, N, d), memory (Bw, N, heads, d)
    o = F.scaled_dot_product_attention(q, k, v) if between is _no_op else _sdpa_in_chunks(q, k, v, between)
    between()
    o = o.transpose(1, 2).reshape(-1, c).index_select(0, scatter)
    return _unflat(F.linear(o, wo, bo).add_(_flat(x)), b, h, w)


def photo_block(block: PhotoBlock, x, between=_no_op):
    """``between()`` runs between the large operations (cancel points inside a slow block)."""
    x = _mlp(block, x, block.norm, block.scale.gamma, between)
    if block.attention:
        between()
        x = _attention(block, x, block.attn_norm, block.attn, block.scale.gamma, between)
    return x


def _token_weights(block: ProBlock, dtype):
    ca, norm = block.token_ca, block.norm4

    def build():
        wq, bq = _fold_norm_into(ca.q_proj.weight, ca.q_proj.bias, norm)  # (r, C), (r,)
        d = _f64(ca.token_dict)[0]  # (T, C)
        k = (d @ _f64(ca.k_proj.weight).t() + _f64(ca.k_proj.bias)) * ca.scale  # (T, r)
        v = d @ _f64(ca.v_proj.weight).t() + _f64(ca.v_proj.bias)  # (T, C)
        g = _f64(block.scale4.gamma).reshape(-1)
        wo = _f64(ca.out_proj.weight)
        # logits = q_proj'(x_hat) @ (k * scale)^T (rank 16); out = softmax @ (v Wo^T g) + bo g
        return _cast(dtype, wq, bq, k, (v @ wo.t()) * g, _f64(ca.out_proj.bias) * g)

    params = [ca.token_dict, norm.scale, norm.bias, block.scale4.gamma] + [
        p for m in (ca.q_proj, ca.k_proj, ca.v_proj, ca.out_proj) for p in (m.weight, m.bias)
    ]
    return _cached(block, "tokens", params, (dtype, ca.scale), build)


def pro_block(block: ProBlock, x, between=_no_op):
    x = _mlp(block, x, block.norm1, block.scale1.gamma, between)
    between()
    # x + gamma2 * (x * w)  ==  x * (1 + gamma2 * w): one pass
    ca = block.channel_attn
    weights = ca.fc(x.mean(dim=(2, 3)))
    x = x * (1 + block.scale2.gamma.reshape(1, -1) * weights)[:, :, None, None]
    if block.attention:
        x = _attention(block, x, block.norm3, block.window_attn, block.scale3.gamma, between)
        between()
    wq, bq, keys, m, m_bias = _token_weights(block, x.dtype)
    b, _, h, w = x.shape
    logits = F.linear(F.linear(_flat(_rms_normalise(x, block.norm4.eps)), wq, bq), keys)
    out = torch.addmm(m_bias, torch.softmax(logits, dim=-1), m)
    return _unflat(out.add_(_flat(x)), b, h, w)


BLOCK_FORWARD = {NanoBlock: nano_block, StreamBlock: stream_block, PhotoBlock: photo_block, ProBlock: pro_block}


# -- head: up.0 -> PixelShuffle -> conv_out, and the base path -----------------------------------


def _head_weights(model, dtype):
    """conv_out(PS(up0(z))) * gain as one 5x5 conv at LR producing 3*s*s phases (PS order)."""
    up, out, s = model.up[0], model.conv_out, model.scale

    def build():
        wu, bu = _f64(up.weight), _f64(up.bias)  # (C*s*s, Cin, 3, 3)
        wo, bo = _f64(out.weight), _f64(out.bias)  # (Co, C, 3, 3)
        co, c = wo.shape[:2]
        cin = wu.shape[1]
        wu6 = wu.view(c, s, s, cin, 3, 3)
        bu3 = bu.view(c, s, s)
        kernel = wu.new_zeros(co, s, s, cin, 5, 5)
        bias = bo.view(co, 1, 1).repeat(1, s, s)
        for py in range(s):
            for px in range(s):
                for dy in (-1, 0, 1):
                    oy, pr = divmod(py + dy, s)
                    for dx in (-1, 0, 1):
                        ox, pq = divmod(px + dx, s)
                        tap = wo[:, :, dy + 1, dx + 1]  # (Co, C)
                        kernel[:, py, px, :, oy + 1 : oy + 4, ox + 1 : ox + 4] += torch.einsum(
                            "oc,cikl->oikl", tap, wu6[:, pr, pq]
                        )
                        bias[:, py, px] += tap @ bu3[:, pr, pq]
        g = _f64(model.detail_gain)
        return _cast(dtype, (kernel * g).reshape(co * s * s, cin, 5, 5), (bias * g).reshape(-1))

    params = [up.weight, up.bias, out.weight, out.bias, model.detail_gain]
    return _cached(model, "head", params, (dtype,), build)


def _exact_edges(model, z: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and last HR rows (dim=2) or columns (dim=3) of conv_out(PS(up0(z))) * gain.

    Only U = up0(z) at the outermost LR line (two lines when s == 1) feeds them, so strips of
    two (three) LR lines suffice; the zero padding at the image edge is then the real one.
    Both strips run as one batch (fewer kernel launches).
    """
    s, b = model.scale, z.shape[0]
    lines = 2 if s > 1 else 3
    n = z.shape[dim]
    # A dense channels-last copy: oneDNN takes it; a strided or NCHW strip of 2 lines can fall
    # back to a slow reference convolution (measured up to 1000x slower).
    strips = torch.cat([z.narrow(dim, 0, lines), z.narrow(dim, n - lines, lines)]).contiguous(memory_format=_CL)
    hr = model.conv_out(F.pixel_shuffle(model.up[0](strips), s).contiguous(memory_format=_CL))
    hr = hr * model.detail_gain
    return hr[:b].narrow(dim, 0, 1), hr[b:].narrow(dim, hr.shape[dim] - 1, 1)


def _base_phases(model, x: torch.Tensor) -> torch.Tensor:
    """MagicKernelSharp base at LR as 3*s*s polyphase channels (PixelShuffle order)."""
    base = model.base
    x = base.sharpen(x)
    kernel, rv, rh = base.polyphase_kernel(x.dtype, x.device)
    return F.conv2d(x, kernel, padding=(rv, rh), groups=x.shape[1])


def head(model, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """base(x) + conv_out(up(z)) * detail_gain, from LR tensors z (conv_mid output) and x."""
    s = model.scale
    b, _, h, w = z.shape
    if h < 3 or w < 3:
        y = model.conv_out(model.up(z)) * model.detail_gain
        return (model.base(x) + y).contiguous()
    kernel, bias = _head_weights(model, z.dtype)
    phases = F.conv2d(z, kernel, bias, padding=2)  # (B, 3*s*s, H, W)
    co = phases.shape[1] // (s * s)
    grid = phases.view(b, co, s, s, h, w)  # channel = c*s*s + py*s + px
    # Replace the outermost HR ring by its exact value (see module docstring).
    rows, cols = _exact_edges(model, z, 2), _exact_edges(model, z, 3)
    for last in (0, 1):
        p, i, j = (s - 1, h - 1, w - 1) if last else (0, 0, 0)
        row = rows[last][:, :, 0, :]  # (B, Co, s*W)
        grid[:, :, p, :, i, :] = row.reshape(b, co, w, s).transpose(2, 3)
        col = cols[last][:, :, :, 0]  # (B, Co, s*H)
        grid[:, :, :, p, :, j] = col.reshape(b, co, h, s).transpose(2, 3)
    if s == 1:
        return phases.add_(_base_phases(model, x)).contiguous()
    phases = phases.add_(_base_phases(model, x))
    return F.pixel_shuffle(phases.contiguous(), s)


def decode(model, x: torch.Tensor, feat: torch.Tensor, on_block=None, on_branch=None) -> torch.Tensor:
    """``on_block()`` after each body block; ``on_branch()`` also inside the slow (attention)
    blocks, between their large operations. Neither touches the tensors."""
    y = feat.contiguous(memory_format=_CL)
    for group in model.body:
        for block in group.blocks:
            forward = BLOCK_FORWARD[type(block)]
            if on_branch is not None and isinstance(block, (PhotoBlock, ProBlock)):
                y = forward(block, y, on_branch)
            else:
                y = forward(block, y)
            if on_block is not None:
                on_block()
    z = model.conv_mid(y)
    return head(model, z, x.contiguous(memory_format=_CL))
