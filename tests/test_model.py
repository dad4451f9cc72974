"""Properties of the network, the input constructions and the sampler."""
import pytest
import torch

from conftest import tiny_config
from pra.config import METHODS
from pra.model.network import Geometry, PRANetwork
from pra.model.scales import get_scale
from pra.flow import make_flow
from pra.noise import Noise
from pra.inputs import TrunkInputs
from pra.objective import Objective
from pra.runtime import generator
from pra.rollout import SamplerSettings, rollout

GEOM = Geometry(resolution=16, channels=1, patch_size=4, num_classes=10)  # 16 tokens of 16-d


def make(which="pra", **over):
    cfg = tiny_config(**over)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = PRANetwork(get_scale("tiny-XS"), cfg.model, GEOM, which).double().eval()
        # the head starts at zero output; randomise it so that tests see a non-trivial head
        for p in net.head.parameters():
            p.data.normal_(0, 0.05)
    return cfg, net


def test_trunk_is_causal():
    _, net = make()
    x = torch.randn(3, 15, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 10])
    h = net.trunk(x, y)
    assert h.shape == (3, 16, net.trunk.width)
    for j in range(15):
        x2 = x.clone()
        x2[:, j] += torch.randn_like(x2[:, j])
        h2 = net.trunk(x2, y)
        # input patch j (the (j+1)-th patch) feeds h_{j+2} onwards; h_1..h_{j+1} must not move
        assert torch.equal(h2[:, : j + 1], h[:, : j + 1]), j
        assert not torch.allclose(h2[:, j + 1], h[:, j + 1])


def test_encoder_is_causal():
    _, net = make()
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    z = net.encoder(x)
    for j in range(16):
        x2 = x.clone()
        x2[:, j] += 1.0
        z2 = net.encoder(x2)
        assert torch.equal(z2[:, :j], z[:, :j]) and not torch.allclose(z2[:, j], z[:, j])


def test_kv_cached_decode_equals_full_forward():
    """Tolerance 1e-10 in float64 (the two paths sum in different orders)."""
    _, net = make()
    x = torch.randn(4, 15, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([0, 3, 7, 10])
    full = net.trunk(x, y)
    cache = net.trunk.new_cache(4, "cpu", torch.double)
    steps = [net.trunk.prefill(y, cache)]
    for i in range(15):
        steps.append(net.trunk.step(x[:, i], cache))
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-10)


def test_cached_rollout_equals_recompute_rollout():
    cfg, net = make()
    flow = make_flow(cfg.model, True)
    s = SamplerSettings(ode_steps=3, cfg_scale=2.0)
    labels = torch.tensor([1, 5])
    a = rollout(net, flow, labels, s, generator(7), use_cache=True)
    b = rollout(net, flow, labels, s, generator(7), use_cache=False)
    torch.testing.assert_close(a.patches, b.patches, rtol=0, atol=1e-9)


def test_pra_inputs_are_built_independently_per_position():
    cfg, net = make("pra")
    obj = Objective("pra", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([2, 4])
    z = net.encoder(x)
    base = obj.inputs.build(net, x, y, z, generator(3))
    for j in [0, 5, 15]:
        z2 = z.clone()
        z2[:, j] += 0.5
        got = obj.inputs.build(net, x, y, z2, generator(3))
        changed = (got - base).abs().amax(dim=(0, 2)) > 0
        assert changed.tolist() == [i == j for i in range(16)], j


def test_sequential_twin_depends_on_its_own_earlier_inputs_and_pra_does_not():
    """Moving the perturbed state at position j changes the twin's inputs at j and at every later position
    (through h from its own pass), but PRA's only at j. The clean prefix moves PRA's inputs, never the twin's."""
    cfg, net = make("pra_sequential")
    obj = Objective("pra", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([2, 4])
    z_t = obj.inputs.perturbed_states(net.encoder(x), Noise(generator(3)))

    def parallel(x_, z_):
        return net.to_pixels(z_, net.trunk(x_[:, :-1], y))

    seq = TrunkInputs.sequential(net, z_t, y)
    par = parallel(x, z_t)
    torch.testing.assert_close(seq[:, 0], par[:, 0])  # h_1 sees only the label in both
    # the fixed point: fed its own inputs as the "clean" prefix, PRA's construction equals the twin's
    torch.testing.assert_close(parallel(seq, z_t), seq)
    for j in (0, 5):
        z2 = z_t.clone()
        z2[:, j] += 0.5
        d_seq = (TrunkInputs.sequential(net, z2, y) - seq).abs().amax(dim=(0, 2)) > 0
        d_par = (parallel(x, z2) - par).abs().amax(dim=(0, 2)) > 0
        assert d_seq.tolist() == [i >= j for i in range(16)], j
        assert d_par.tolist() == [i == j for i in range(16)], j
    x2 = x.clone()
    x2[:, 3] += 0.5
    assert torch.equal(TrunkInputs.sequential(net, z_t, y), seq)
    assert ((parallel(x2, z_t) - par).abs().amax(dim=(0, 2)) > 0).tolist() == [i > 3 for i in range(16)]


def test_twin_and_pra_draw_the_same_perturbation():
    """The inputs of pra and pra_sequential consume the noise stream alike, so with a decoder that ignores
    its context (the twin's only difference) the two constructions coincide exactly."""
    cfg, net = make("pra", model={"decoder_context": False})
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    z = net.encoder(x)
    a = Objective("pra", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    b = Objective("pra_sequential", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("law", ["interpolant", "variance_preserving", "additive"])
def test_perturbation_laws_on_known_moments(law):
    """Each law at a fixed t on a unit-variance state: the mean of z~ given z (the shrinkage) and the energy ratio
    E|z~|^2 / E|z|^2 are the law's; at t = 1 every law returns z itself (the control arm)."""
    cfg, _ = make("pra", method={"perturbation_law": law})
    inputs = Objective("pra", cfg.model, cfg.method, latent=True).inputs
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 50, 4, generator=g, dtype=torch.double)
    eps = torch.randn(400, 50, 4, generator=g, dtype=torch.double)
    t = torch.full((400, 50), 0.6, dtype=torch.double)
    zt = inputs.perturb(z, t, eps)
    signal = {"interpolant": 0.6, "variance_preserving": 0.6, "additive": 1.0}[law]
    noise = {"interpolant": 0.4, "variance_preserving": 0.8, "additive": 0.4}[law]
    torch.testing.assert_close(zt, signal * z + noise * eps)  # the law's coefficients exactly
    energy = float((zt ** 2).mean() / (z ** 2).mean())
    assert abs(energy - (signal ** 2 + noise ** 2)) < 0.02, energy   # 0.52, 1.0, 1.16
    slope = float((zt * z).mean() / (z * z).mean())                   # E[z~ | z] = signal * z
    assert abs(slope - signal) < 0.02, slope
    assert torch.equal(inputs.perturb(z, torch.ones(400, 50, dtype=torch.double), eps), z)


def test_the_interpolant_law_keeps_pra_inputs_unchanged():
    """The default law reproduces the construction written out by hand from the same draws (t, then eps, after
    the teacher-forced pass), so choosing it changes nothing in existing runs."""
    cfg, net = make("pra")
    assert cfg.method.perturbation_law == "interpolant"
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    z = net.encoder(x)
    got = Objective("pra", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    noise = Noise(generator(5))
    t = cfg.method.t_min + (1 - cfg.method.t_min) * noise.rand(3, 16)
    eps = noise.randn(*z.shape, dtype=z.dtype)
    want = net.to_pixels(t[..., None].double() * z + (1 - t[..., None].double()) * eps, net.trunk(x[:, :-1], y))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("law", ["variance_preserving", "additive"])
def test_other_laws_move_pra_inputs_and_keep_the_twin_aligned(law):
    """Another law changes PRA's inputs; pra and its twin still consume the stream alike (equal when the decoder
    ignores its context); an anchored method refuses a law other than the interpolant."""
    cfg, net = make("pra", model={"decoder_context": False}, method={"perturbation_law": law})
    base_cfg, _ = make("pra", model={"decoder_context": False})
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    z = net.encoder(x)
    a = Objective("pra", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    b = Objective("pra_sequential", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    c = Objective("pra", base_cfg.model, base_cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3
    for m in ("parallel_anchored", "anchored_rollout"):  # refused when the training objective is built
        with pytest.raises(ValueError, match="perturbation_law"):
            Objective(m, cfg.model, cfg.method, latent=True)


def test_unmasked_head_targets_see_every_patch():
    """head_target 'unmasked': the head's z comes from a pass without the mask (equal to encoder(x));
    'masked' reproduces the masked pass, whose codes of masked tokens differ."""
    cfg, net = make("pra", method={"p_sample": 1.0, "p_token": 0.5})
    x = torch.randn(4, 16, GEOM.patch_dim, dtype=torch.double)
    unmasked = Objective("pra", cfg.model, cfg.method, latent=True)
    z_rec, z = unmasked.inputs.head_states(net, x, Noise(generator(0)))
    torch.testing.assert_close(z, net.encoder(x))
    assert not torch.allclose(z_rec, z)
    masked_cfg = cfg.replace(method={"head_target": "masked"})
    masked = Objective("pra", masked_cfg.model, masked_cfg.method, latent=True)
    z_rec2, z2 = masked.inputs.head_states(net, x, Noise(generator(0)))
    assert torch.equal(z_rec2, z2) and torch.equal(z_rec2, z_rec)


def test_free_rollout_inputs_equal_the_sampler():
    cfg, net = make("free_rollout")
    obj = Objective("free_rollout", cfg.model, cfg.method, latent=True)
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    got = obj.inputs.build(net, x, y, net.encoder(x), generator(11))
    settings = SamplerSettings(ode_steps=cfg.method.rollout_ode_steps, solver=cfg.method.rollout_solver)
    ref = rollout(net, make_flow(cfg.model, True), y, settings, generator(11))
    assert torch.equal(got, ref.patches)


def test_a_rollout_continued_from_its_own_prefix_reproduces_it():
    """prefix: the first s positions are fed as given; with the same start noise (initial), a rollout continued
    from the first s patches of another rollout reproduces that rollout exactly."""
    cfg, net = make("pra")
    flow = make_flow(cfg.model, True)
    y = torch.tensor([1, 2, 3])
    s = SamplerSettings(ode_steps=4, solver="euler")
    init = torch.randn(3, 16, net.head.out.out_features, dtype=torch.double, generator=generator(2))
    full = rollout(net, flow, y, s, generator(0), initial=init)
    for n in (1, 6, 15):
        cont = rollout(net, flow, y, s, generator(0), initial=init, prefix=full.patches[:, :n])
        torch.testing.assert_close(cont.patches, full.patches)
    other = torch.rand(3, 6, GEOM.patch_dim, dtype=torch.double) * 2 - 1
    cont = rollout(net, flow, y, s, generator(0), initial=init, prefix=other)
    assert torch.equal(cont.patches[:, :6], other) and not torch.allclose(cont.patches[:, 6:], full.patches[:, 6:])


def test_anchored_rollout_approaches_truth_as_t_min_goes_to_one():
    cfg, net = make("anchored_rollout", method={"t_min": 1.0})
    obj = Objective("anchored_rollout", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2])
    z = net.encoder(x)
    got = obj.inputs.build(net, x, y, z, generator(0))
    # t = 1: every position starts (and ends) at the true state, decoded with the rollout's context
    r = rollout(net, obj.flow, y, obj.inputs.rollout_settings, generator(0), anchor=(z, torch.ones(2, 16, dtype=torch.double)))
    torch.testing.assert_close(r.states, z)
    assert torch.equal(got, r.patches)


def test_twin_state_sees_the_clean_prefix_through_the_encoder_and_its_trunk_never_does():
    """End to end through the causal encoder: one clean patch j moved changes z from j on, hence the twin's
    inputs at j and after (its state z~, as in PRA, comes from the clean patches), never before; and while the
    twin is built the trunk receives only the twin's own inputs, never a clean patch."""
    cfg, net = make("pra_sequential")
    obj = Objective("pra_sequential", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([2, 4])
    fed = []
    hook = net.trunk.register_forward_pre_hook(lambda mod, args: fed.extend(a for a in args if torch.is_tensor(a)
                                                                            and a.is_floating_point()))
    calls = {"step": 0}
    step = net.trunk.step

    def spy(x_i, cache):
        calls["step"] += 1
        fed.append(x_i)
        return step(x_i, cache)
    net.trunk.step = spy
    try:
        base = obj.inputs.build(net, x, y, net.encoder(x), generator(9))
    finally:
        hook.remove()
        net.trunk.step = step
    assert calls["step"] == 15
    clean_rows = x.reshape(-1, GEOM.patch_dim)
    for a in fed:
        rows = a.reshape(-1, GEOM.patch_dim)
        assert not any(torch.isclose(rows, c).all(-1).any() for c in clean_rows)
    for j in (0, 3, 9):
        x2 = x.clone()
        x2[:, j] += 0.5
        moved = obj.inputs.build(net, x2, y, net.encoder(x2), generator(9))
        changed = ((moved - base).abs().amax(dim=(0, 2)) > 0).tolist()
        assert changed == [i >= j for i in range(16)], j


def test_energy_matched_keeps_pras_error_size_per_token_in_another_direction():
    """With the same draws, the energy-matched input lies exactly as far from the rendering of the true state
    as PRA's input does, token by token, but not in PRA's direction."""
    cfg, net = make("pra")
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    z = net.encoder(x)
    pra = Objective("pra", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    em = Objective("energy_matched", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    rendered = net.to_pixels(z, net.trunk(x[:, :-1], y))
    torch.testing.assert_close((em - rendered).norm(dim=-1), (pra - rendered).norm(dim=-1))
    cos = torch.nn.functional.cosine_similarity(em - rendered, pra - rendered, dim=-1)
    assert cos.abs().mean() < 0.5  # isotropic directions in 16-d: |cos| ~ 0.2 on average
    # no perturbation (t_min = 1): nothing to match, both are the rendering of the true state
    cfg1, _ = make("pra", method={"t_min": 1.0})
    em1 = Objective("energy_matched", cfg1.model, cfg1.method, latent=True).inputs.build(net, x, y, z, generator(5))
    torch.testing.assert_close(em1, rendered)


def test_parallel_anchored_is_the_anchored_rollout_given_its_own_prefix():
    """parallel_anchored integrates every head ODE from the noised true state with the teacher-forced context: at
    position 0 (label only) it equals the anchored rollout with the same (t, eps); fed the anchored rollout's own
    patches as its prefix it reproduces that rollout everywhere; at t_min = 1 it is PRA's reconstruction."""
    cfg, net = make("parallel_anchored")
    obj = Objective("parallel_anchored", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2])
    z = net.encoder(x)
    got = obj.inputs.build(net, x, y, z, generator(7))
    noise = Noise(generator(7))  # the construction's draw order: t, then eps
    t = obj.inputs.perturbation_times(2, 16, noise).double()
    eps = noise.randn(*z.shape, dtype=z.dtype)
    r = rollout(net, obj.flow, y, obj.inputs.rollout_settings, generator(0), anchor=(z, t), anchor_noise=eps)
    torch.testing.assert_close(got[:, 0], r.patches[:, 0])
    assert not torch.allclose(got[:, 1:], r.patches[:, 1:])  # the context differs from position 1 on
    own = net.to_pixels(obj.inputs.anchored_states(net, z, t, eps, net.trunk(r.patches[:, :-1], y)),
                        net.trunk(r.patches[:, :-1], y))
    torch.testing.assert_close(own, r.patches)
    cfg1, _ = make("parallel_anchored", method={"t_min": 1.0})
    one = Objective("parallel_anchored", cfg1.model, cfg1.method, latent=True).inputs.build(net, x, y, z, generator(7))
    torch.testing.assert_close(one, net.to_pixels(z, net.trunk(x[:, :-1], y)))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_one_step(method):
    cfg, net = make(method)
    net.train()
    obj = Objective(method, cfg.model, cfg.method, latent=net.latent)
    x = torch.rand(4, 16, GEOM.patch_dim, dtype=torch.double) * 2 - 1
    loss, logs = obj(net, x, torch.tensor([0, 1, 2, 3]), generator(0))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None for n, g in grads.items() if n.startswith(("trunk.", "head."))), method
    if net.latent:
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("encoder."))
        assert "loss_recon" in logs


def test_no_grad_pass_holds_no_graph():
    """PRA's first trunk pass and the decoder run without autograd: the inputs carry no graph."""
    cfg, net = make("pra")
    obj = Objective("pra", cfg.model, cfg.method, latent=True)
    x = torch.randn(2, 16, GEOM.patch_dim, dtype=torch.double)
    inputs = obj.inputs.build(net, x, torch.tensor([1, 2]), net.encoder(x), generator(0))
    assert inputs.grad_fn is None and not inputs.requires_grad


def test_rope_identity_for_prefix():
    _, net = make()
    rope = net.trunk.body.rope
    K = net.trunk.prefix_tokens
    assert torch.all(rope.cos[:K] == 1) and torch.all(rope.sin[:K] == 0)
    assert "cos" not in net.state_dict() and any(n == "cos" for n, _ in rope.named_buffers())


def _objective_run(method, recon_context, seed=4):
    cfg, net = make(method, method={"recon_context": recon_context}, model={"class_dropout": 0.5})
    net.train()
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double, generator=generator(1))
    y = torch.tensor([1, 2, 3])
    obj = Objective(method, cfg.model, cfg.method, latent=True)
    loss, logs = obj(net, x, y, generator(seed))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return cfg, net, obj, x, y, logs, grads


def test_teacher_forced_reconstruction_context_leaves_latent_tf_unchanged():
    """For latent_tf the trunk's own inputs are the clean patches: both settings give the same step, bit for bit."""
    *_, logs_own, g_own = _objective_run("latent_tf", "own")
    *_, logs_tf, g_tf = _objective_run("latent_tf", "teacher_forced")
    assert logs_own.keys() == logs_tf.keys()
    for k in logs_own:
        assert torch.equal(logs_own[k], logs_tf[k]), k
    assert g_own.keys() == g_tf.keys() and all(torch.equal(g_own[n], g_tf[n]) for n in g_own)


@pytest.mark.parametrize("method", ["pra", "pra_sequential"])
def test_teacher_forced_reconstruction_decodes_with_the_clean_pass(method):
    """A known answer: the reconstruction loss under 'teacher_forced' equals the masked encoder's codes decoded
    with the trunk's pass over the clean patches, replayed from the same noise stream (the label drop, then the
    encoder mask are the first draws). pra reuses the context its inputs were built with; pra_sequential, whose
    construction has none, runs the clean pass. 'own' decodes with the pass over the arm's inputs: another loss,
    and the head's loss is the same under both (the setting touches the decoder's loss only)."""
    cfg, net, obj, x, y, logs_tf, g_tf = _objective_run(method, "teacher_forced")
    noise = Noise(generator(4))
    drop = noise.rand(3) < cfg.model.class_dropout
    assert drop.any() and not drop.all()  # the replay covers dropped and kept labels
    labels = torch.where(drop, torch.full_like(y, net.trunk.null_label), y)
    with torch.no_grad():
        z_rec, _ = obj.inputs.head_states(net, x, noise)
        expected = ((net.to_pixels(z_rec, net.trunk(x[:, :-1], labels)) - x) ** 2).mean()
    torch.testing.assert_close(logs_tf["loss_recon"], expected, rtol=1e-12, atol=0)
    *_, logs_own, g_own = _objective_run(method, "own")
    assert not torch.allclose(logs_own["loss_recon"], expected, rtol=1e-6, atol=0)
    assert torch.equal(logs_own["loss_head"], logs_tf["loss_head"])
    # no gradient reaches the trunk or the head through the reconstruction: theirs are the same bit for bit,
    # while the decoder's differ
    for name in g_own:
        if name.startswith(("trunk.", "head.")):
            assert torch.equal(g_own[name], g_tf[name]), name
    assert any(not torch.equal(g_own[n], g_tf[n]) for n in g_own if n.startswith("decoder."))


def test_the_encoders_mask_token_does_not_set_the_gradient_clip():
    """The mask embedding enters the encoder's first RMSNorm; at exactly zero that norm divides by sqrt(eps) and
    this one vector carried nearly all of the global gradient norm (over a thousand times the rest at
    initialisation), so the clip scaled every other gradient of the latent arms by it. At fp32, as training runs,
    with the real initialisation, it is now no larger than the rest together."""
    cfg = tiny_config()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = PRANetwork(get_scale("tiny-XS"), cfg.model, GEOM, "pra").train()
    obj = Objective("pra", cfg.model, cfg.method, latent=True)
    x = torch.rand(32, 16, GEOM.patch_dim, generator=generator(1)) * 2 - 1
    loss, _ = obj(net, x, torch.arange(32) % 10, generator(0))
    loss.backward()
    mask = net.encoder.mask_token.grad
    rest = torch.cat([p.grad.flatten() for n, p in net.named_parameters()
                      if p.grad is not None and n != "encoder.mask_token"])
    assert mask is not None and mask.norm() > 0  # some token was masked in this batch
    assert mask.norm() < rest.norm(), (float(mask.norm()), float(rest.norm()))


def test_pra_without_perturbation_feeds_the_rendering_of_the_true_state():
    """t_min = 1: PRA's inputs are exactly D(z, h) of the clean states z in the teacher-forced context."""
    cfg, net = make("pra", method={"t_min": 1.0})
    x = torch.randn(3, 16, GEOM.patch_dim, dtype=torch.double)
    y = torch.tensor([1, 2, 3])
    z = net.encoder(x)
    got = Objective("pra", cfg.model, cfg.method, latent=True).inputs.build(net, x, y, z, generator(5))
    assert torch.equal(got, net.to_pixels(z, net.trunk(x[:, :-1], y)))


class _PointHead(torch.nn.Module):
    """An oracle head for targets given by the condition's first D numbers (a point mass per condition): its
    x-prediction is that target; its v-prediction the exact velocity (y* - y_t) / (1 - t) of the flow."""

    def __init__(self, dim: int, prediction: str):
        super().__init__()
        self.y_in = torch.nn.Linear(dim, 1).double()
        self.out = torch.nn.Linear(1, dim)
        self.prediction = prediction

    def forward(self, y_t, t, cond):
        target = cond[:, : y_t.shape[1]]
        return target if self.prediction == "x" else (target - y_t) / (1 - t)[:, None]


@pytest.mark.parametrize("prediction", ["v", "x"])
def test_the_head_loss_and_its_sampler_share_one_convention(prediction):
    """With the oracle head the velocity loss is zero (noise at t = 0, data at t = 1, v = y - eps) and the ODE
    lands on the target; with guidance w it lands on y_u + w (y_c - y_u), the mix v_u + w (v_c - v_u)."""
    from pra.flow import Flow

    flow, head, D = Flow(prediction=prediction), _PointHead(3, prediction), 3
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(5, 8, generator=g, dtype=torch.double), torch.randn(5, 8, generator=g, dtype=torch.double)
    eps, t = torch.randn(5, D, generator=g, dtype=torch.double), torch.rand(5, generator=g, dtype=torch.double) * 0.9
    assert flow.loss(head, cond[:, :D], cond, eps, t).abs().max() < 1e-20
    y0 = torch.randn(5, D, generator=g, dtype=torch.double)
    for solver in ("euler", "heun"):
        got = flow.sample(head, cond, steps=8, solver=solver, y_start=y0, t_start=torch.zeros(5, dtype=torch.double))
        torch.testing.assert_close(got, cond[:, :D])
        guided = flow.sample(head, cond, steps=8, solver=solver, uncond=uncond, cfg_scale=2.5, y_start=y0,
                             t_start=torch.zeros(5, dtype=torch.double))
        torch.testing.assert_close(guided, uncond[:, :D] + 2.5 * (cond[:, :D] - uncond[:, :D]))


def test_guided_rollout_conditions_on_the_class_and_the_null_label_on_the_same_prefix():
    """Classifier-free guidance in the sampler: at every position the conditional state is the trunk's pass over
    the generated prefix with the class, the unconditional one the same prefix with the null label, the scale
    ramps linearly from 1 to cfg_scale over the positions, and the decoder renders with the conditional state."""
    from pra.rollout import HeadODE

    cfg, net = make("pra")
    seen = []

    class Recording(HeadODE):
        def __call__(self, cond, uncond, cfg_scale, y0, t0):
            seen.append((cond.clone(), uncond.clone(), cfg_scale))
            return super().__call__(cond, uncond, cfg_scale, y0, t0)

    flow = make_flow(cfg.model, True)
    settings = SamplerSettings(ode_steps=2, cfg_scale=3.0, cfg_schedule="linear")
    y = torch.tensor([1, 4])
    r = rollout(net, flow, y, settings, generator(0), ode=Recording(flow, net.head, settings))
    null = torch.full_like(y, net.trunk.null_label)
    assert len(seen) == 16
    for i, (cond, uncond, w) in enumerate(seen):
        torch.testing.assert_close(cond, net.trunk(r.patches[:, :i], y)[:, -1])
        torch.testing.assert_close(uncond, net.trunk(r.patches[:, :i], null)[:, -1])
        assert w == pytest.approx(1 + 2.0 * i / 15)
        torch.testing.assert_close(r.hidden[:, i], cond)
    torch.testing.assert_close(r.patches, net.to_pixels(r.states, r.hidden))


def test_codec_and_ar_model_exchange_values_not_gradients():
    """The default objective: the codec (encoder, decoder) learns only from the reconstruction and moment losses,
    the trunk and head only from the head loss. With those two losses off, no gradient reaches the codec; with
    them on, the trunk's and head's gradients do not move (docs/method.md)."""
    cfg, net = make("pra")
    net.train()
    x = torch.rand(6, 16, GEOM.patch_dim, dtype=torch.double, generator=generator(3)) * 2 - 1
    y = torch.arange(6) % 10

    def grads(recon, moment):
        c = tiny_config(method={"recon_weight": recon, "moment_weight": moment})
        net.zero_grad(set_to_none=True)
        Objective("pra", c.model, c.method, latent=True)(net, x, y, generator(0))[0].backward()
        return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in net.named_parameters()}

    off, on = grads(0.0, 0.0), grads(1.0, 0.1)
    codec = [n for n in off if n.startswith(("encoder.", "decoder."))]
    ar = [n for n in off if n.startswith(("trunk.", "head."))]
    assert codec and ar
    assert all(off[n].abs().max() == 0 for n in codec)
    assert any(on[n].abs().max() > 0 for n in codec)
    assert all(torch.equal(off[n], on[n]) for n in ar)
