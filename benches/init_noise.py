#!/usr/bin/env python3
"""How much of the frontier's "largest drop <= tol" is a draw: the accuracy drop of digits-mlp's
epoch 0 (the random initialisation) and epoch 1 when every weight is rounded to the nearest point
of a log grid of step 2 ln(1+eps) with a random offset per element (what a lattice keyframe or
anchoring delta does), over 40 draws of the offsets.

    ../shared/bench/.venv/bin/python benches/init_noise.py [BENCH_DIR]   (numpy + safetensors)
"""
import os, sys
import numpy as np

BENCH = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../shared/bench")
sys.path.insert(0, BENCH)
import peers  # noqa: E402

run = peers.load_evaluator(os.path.join(BENCH, "digits-mlp/eval.py"))
for ep in (0,1):
    sd={k:a for k,(_,a) in peers.read_st(os.path.join(BENCH, f'digits-mlp/epoch_{ep:03d}.safetensors'))[1].items()}
    base=run(sd)
    for eps in (0.05,0.1):
        step=2*np.log1p(eps); drops=[]
        for seed in range(40):
            rng=np.random.default_rng(seed); q={}
            for k,a in sd.items():
                a64=a.astype(np.float64); o=rng.random(a.shape)
                y=np.log(np.abs(a64))/step
                pos=np.round(y+o)-o
                q[k]=np.where(a64!=0, np.sign(a64)*np.exp(pos*step), 0).astype(np.float32)
            drops.append(base-run(q))
        d=np.array(drops)
        print(f"epoch {ep} rel {eps}: drop mean {d.mean():+.4f} sd {d.std():.4f} max {d.max():+.4f}; P(drop<=0.01) {np.mean(d<=0.01+1e-9):.2f}; P(<=0.003) {np.mean(d<=0.003+1e-9):.2f}")
