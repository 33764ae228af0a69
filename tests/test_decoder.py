"""The shared attention decoder: KV-cached incremental decoding, padding masks, CTC head, joint loss."""

import pytest
import torch

from toolkit.model import BOS_ID, EOS_ID, CTCHead, DecoderConfig, EncoderOutput, TransformerDecoder
from toolkit.model.base import add_bos_eos


def make_decoder(vocab=23, d=32, layers=2, **kw):
    cfg = DecoderConfig(num_layers=layers, num_heads=4, ffn_dim=64, dropout=0.0, max_len=64, **kw)
    return TransformerDecoder(vocab, d, cfg).eval()


def memory(b=3, s=7, d=32, lengths=(7, 4, 1)):
    return EncoderOutput(torch.randn(b, s, d), torch.tensor(lengths))


@pytest.mark.parametrize("tie", [True, False])
def test_incremental_decoding_matches_full_sequence(tie):
    dec = make_decoder(tie_embeddings=tie)
    enc = memory()
    tokens = torch.randint(4, 23, (3, 12))
    full, _ = dec(tokens, dec.init_state(enc))
    state = dec.init_state(enc)
    steps = []
    for i in range(12):
        logits, state = dec(tokens[:, i : i + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # Chunks of several tokens on top of a cache use the causal mask with an offset.
    state = dec.init_state(enc)
    a, state = dec(tokens[:, :5], state)
    c, state = dec(tokens[:, 5:], state)
    torch.testing.assert_close(torch.cat([a, c], 1), full, atol=1e-5, rtol=1e-5)
    assert state.offset == 12 and state.self_kv[0][0].shape == (3, 4, 12, 8)


def test_forward_and_select_return_new_states():
    dec = make_decoder()
    tokens = torch.randint(4, 23, (3, 6))
    state = dec.init_state(memory())
    first, after = dec(tokens[:, :3], state)
    assert state.offset == 0 and state.self_kv == [] and after.offset == 3
    torch.testing.assert_close(dec(tokens[:, :3], state)[0], first)  # the state given is as it was
    a, _ = dec(tokens[:, 3:], after)
    b, _ = dec(tokens[:, 3:], after)
    assert torch.equal(a, b) and after.self_kv[0][0].shape == (3, 4, 3, 8)
    # Two beams per input; moving rows only among an input's beams, select_beams equals select.
    beams = after.select(torch.tensor([0, 0, 1, 1, 2, 2]))
    assert beams.memory_mask.size(0) == 6 and after.memory_mask.size(0) == 3
    index = torch.tensor([1, 1, 3, 2, 4, 5])
    nxt = torch.randint(4, 23, (6, 1))
    torch.testing.assert_close(dec(nxt, beams.select_beams(index))[0], dec(nxt, beams.select(index))[0])
    assert beams.select_beams(index).cross_kv is beams.cross_kv


def test_future_tokens_do_not_change_past_logits():
    dec = make_decoder()
    enc = memory()
    tokens = torch.randint(4, 23, (3, 10))
    other = tokens.clone()
    other[:, 6:] = torch.randint(4, 23, (3, 4))
    a, _ = dec(tokens, dec.init_state(enc))
    b, _ = dec(other, dec.init_state(enc))
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_memory_padding_is_masked():
    dec = make_decoder()
    enc = memory()
    tokens = torch.randint(4, 23, (3, 5))
    ref, _ = dec(tokens, dec.init_state(enc))
    noisy = enc.memory.clone()
    noisy[1, 4:] = 1e3 * torch.randn(3, 32)  # padding of item 1
    noisy[2, 1:] = float("nan")  # NaN in padding must not leak either
    out, _ = dec(tokens, dec.init_state(EncoderOutput(noisy, enc.lengths)))
    torch.testing.assert_close(out, ref)
    # Each item alone, unpadded, gives the same logits.
    for i, n in enumerate(enc.lengths.tolist()):
        alone = EncoderOutput(enc.memory[i : i + 1, :n], enc.lengths[i : i + 1])
        single, _ = dec(tokens[i : i + 1], dec.init_state(alone))
        torch.testing.assert_close(single, ref[i : i + 1], atol=1e-5, rtol=1e-5)


def test_attention_weights_recorded_and_consistent():
    dec = make_decoder()
    enc = memory()
    tokens = torch.randint(4, 23, (3, 4))
    plain, _ = dec(tokens, dec.init_state(enc))
    logits, state = dec(tokens, dec.init_state(enc, record_attention=True))
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    w = state.attention
    assert w.shape == (3, 4, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4))
    assert (w[1, :, 4:] == 0).all() and (w[2, :, 1:] == 0).all()


def test_max_len_is_enforced():
    dec = make_decoder()
    with pytest.raises(ValueError, match="max_len"):
        dec(torch.zeros(1, 65, dtype=torch.long), dec.init_state(memory(1, 3, lengths=(3,))))


def test_add_bos_eos():
    targets = torch.tensor([[5, 6, 7], [8, 0, 0]])
    tin, tout = add_bos_eos(targets, torch.tensor([3, 1]))
    assert tin.tolist() == [[BOS_ID, 5, 6, 7], [BOS_ID, 8, 0, 0]]
    assert tout.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, -100, -100]]


def test_ctc_head_fp32_under_autocast_and_loss():
    head = CTCHead(32, 11, dropout=0.0)
    enc = EncoderOutput(torch.randn(2, 20, 32), torch.tensor([20, 12]))
    targets = torch.tensor([[4, 5, 6], [7, 8, 0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = head(enc.memory.bfloat16())
        loss = head.loss(enc, targets, torch.tensor([3, 2]))
    assert lp.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 20), atol=1e-3, rtol=0)
    ref = torch.nn.functional.ctc_loss(
        head(enc.memory).transpose(0, 1), targets, enc.lengths, torch.tensor([3, 2]), reduction="sum"
    ) / 2
    torch.testing.assert_close(head.loss(enc, targets, torch.tensor([3, 2])), ref)
