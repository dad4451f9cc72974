"""reports/settle2/p0d_doses.png from the committed p0d records and approximation JSONs (run from the repository root:
python reports/settle2/p0d_doses.py)."""
import json, glob, matplotlib
matplotlib.use("Agg"); import matplotlib.pyplot as plt
runs=[json.load(open(p)) for p in glob.glob("reports/settle2/blocks/p0d/runs/*.json")]
fig,ax=plt.subplots(1,2,figsize=(9,3.6))
cols={"pra 0.5":"C0","pra 0.75":"C1","pra 1.0":"C2","anchored 0.5":"C3","anchored 0.75":"C4"}
for f in sorted(glob.glob("reports/settle2/p0d_approximation/*.json")):
    d=json.load(open(f)); m,v,s=f.split("/")[-1][:-5].split("__"); seed=int(s[1:])
    rec=next(r for r in runs if r["method"]==m and r["run_id"]==v and r["seed"]==seed)
    key=f"{'pra' if m=='pra' else 'anchored'} {d['settings']['t_min']}"
    c=d["constructions"]
    ax[0].plot(c["pra"]["content_ratio"], rec["metrics"]["fid"], "o", color=cols[key], label=key.replace(" ", " t_min "))
    ax[1].plot(rec["input_mse_last_fifth"], rec["metrics"]["fid"], "o", color=cols[key], label=key.replace(" ", " t_min "))
for a in ax:
    a.set_ylabel("FID (1,000 samples, mosaic classifier)", fontsize=8)
h,l=ax[0].get_legend_handles_labels(); u=dict(zip(l,h))
ax[0].legend(u.values(), u.keys(), fontsize=7)
ax[0].set_xlabel("PRA's inputs' distance to the anchored rollout's inputs\n/ the rollout's distance to the true patch (content positions)", fontsize=8)
ax[1].set_xlabel("realised input error (MSE of the trunk's inputs to the clean\npatches, last fifth of training)", fontsize=8)
fig.suptitle("p0d per run, 2 tuning seeds per dose: descriptive, not a test (each model's own construction at its own t_min)", fontsize=8)
fig.tight_layout(); fig.savefig("reports/settle2/p0d_doses.png", dpi=110)
