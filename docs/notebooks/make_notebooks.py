"""Regenerate the teaching notebooks (sources of their cells): python docs/notebooks/make_notebooks.py, then run them."""
import nbformat as nbf
from pathlib import Path

def notebook(cells, path):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    nbf.write(nb, path)

out = Path(__file__).resolve().parent

notebook([
("md", """# 1. Position bias and click models

Users click what is shown high. A **click model** is a distribution over click vectors given a ranking. Here we
sample logs from three click models, plot the click-through rate per rank, fit the models back, and compare them by
held-out perplexity (lower is better; a coin flip scores 2)."""),
("code", """import numpy as np
import matplotlib.pyplot as plt
import seaborn as sns
from simulators import simulate_toy_log, toy_session_batches, true_parameters
from click_models.fitting import fit_em, assemble
from click_models.evaluation import evaluate

sns.set_theme(style="whitegrid")
QUERIES, DOCS, SESSIONS = 100, 10, 100_000"""),
("md", """Each toy query has 10 documents with random attraction; every session shows them in a random order, so each
document appears at every rank. PBM multiplies attraction by a per-rank examination probability; the cascade model
stops at the first click; DBN may stop after a satisfying click."""),
("code", """logs = {}
for model in ["pbm", "cascade", "dbn"]:
    truth = true_parameters(model, QUERIES, DOCS, seed=0)
    log = simulate_toy_log(model, truth, QUERIES, DOCS, SESSIONS, seed=1)
    logs[model] = (truth, log)
    print(model, "clicks per session:", log.clicks.sum(1).mean().round(3))"""),
("code", """fig, ax = plt.subplots(figsize=(7, 4))
for model, (truth, log) in logs.items():
    ax.plot(np.arange(1, DOCS + 1), log.clicks.mean(0), marker="o", label=model)
ax.set(xlabel="rank", ylabel="click-through rate", title="CTR per rank: position bias in every model")
ax.legend();"""),
("md", """Now fit every model to the PBM log and to the DBN log by EM and compare the held-out perplexity per rank. The
model that generated the log should fit it best."""),
("code", """rows = []
for source in ["pbm", "dbn"]:
    truth, log = logs[source]
    batches = toy_session_batches(log, DOCS, 50_000)
    train, held_out = batches[:-1], batches[-1:]
    for model in ["pbm", "cascade", "dbn", "ubm"]:
        fitted = fit_em(model, train, QUERIES * DOCS, DOCS, max_iterations=60)
        metrics = evaluate(fitted.click_model, held_out)
        rows.append((source, model, metrics["perplexity"], metrics["log_likelihood"]))
for source, model, perplexity, ll in rows:
    print(f"logs from {source:>4}, fitted {model:>7}: perplexity {perplexity:.4f}, log-likelihood {ll:.3f}")"""),
("md", """The cascade model allows one click per session, so sessions with two clicks have probability 0 under it: its
log-likelihood on these logs is minus infinity. Perplexity, computed rank by rank from marginal click probabilities,
still ranks the models: the generating model (or UBM, which contains PBM) fits best."""),
("code", """truth, log = logs["pbm"]
fitted = fit_em("pbm", toy_session_batches(log, DOCS), QUERIES * DOCS, DOCS, max_iterations=500)
exam = fitted.tables["examination"]
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(range(1, DOCS + 1), truth["examination"] / truth["examination"][0], marker="o", label="true")
ax.plot(range(1, DOCS + 1), exam / exam[0], marker="x", linestyle="--", label="EM estimate")
ax.set(xlabel="rank", ylabel="examination (normalised at rank 1)", title="PBM examination recovered by EM")
ax.legend();"""),
], out / "01_position_bias_and_click_models.ipynb")

notebook([
("md", """# 2. From clicks to rankers

We simulate biased clicks on the built-in synthetic dataset with a position-based model and train the same ranker
three ways: treating clicks as labels (**naive**), reweighting clicks by inverse examination propensities
(**IPS**), and learning propensities and ranker jointly (**DLA**). The full-information **skyline** is trained on
the true labels."""),
("code", """import tempfile
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from simulators.datasets import synthetic_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.training import TrainConfig, train

sns.set_theme(style="whitegrid")
dataset = synthetic_dataset(num_queries=300, docs_per_query=15, num_features=8, seed=0)
logs = Path(tempfile.mkdtemp()) / "logs"
summary = Simulator(dataset, SimulationConfig(click_model="pbm", eta=2.0, production_fraction=0.05), seed=0).run(
    logs, 100_000, progress=False)
print("CTR per rank:", [round(x, 3) for x in summary["ctr_per_rank"]])"""),
("md", """With η = 2 the examination probability falls fast with the rank: clicks on low-ranked documents are rare
whatever their relevance, which misleads the naive learner."""),
("code", """results = []
for learner in ["naive", "ips", "dla", "skyline"]:
    config = TrainConfig(learner=learner, ranker="mlp", hidden=(32, 16), learning_rate=0.003, epochs=1,
                         eval_every=100, patience=5,
                         propensities="oracle" if learner == "ips" else None)  # IPS with the true examination
    if learner == "dla":  # ULTRA's settings (Adagrad 0.05); the propensity model needs the whole pass
        config = TrainConfig(learner="dla", ranker="mlp", hidden=(32, 16), optimizer="adagrad", learning_rate=0.05,
                             learner_options={"max_weight": 1e9}, epochs=2, eval_every=100, patience=1000)
    result = train(logs, dataset, config, progress=False)
    results.append({"learner": learner, **{k: v for k, v in result.test.items() if k != "num_queries"}})
    if result.propensities is not None:
        print("DLA propensities:", [round(p, 2) for p in result.propensities])
table = pd.DataFrame(results)
table"""),
("md", """IPS, which is given the true propensities, closes most of the gap to the skyline. DLA must learn them from
the same clicks, and here it struggles: with 300 queries, a deterministic logging policy and 100,000 sessions, every
document is always shown at the same rank. The ranker can then memorise each document's click rate, position effect
included, and once it has, the propensity model sees a flat curve: both explanations fit the clicks equally well.

DLA is a race. If the propensity model learns faster than the ranker can memorise, the position effect is explained
by the propensities first and the ranker is left with relevance. `bias_learning_rate` gives the propensity model its
own learning rate (here 20 times the ranker's):"""),
("code", """import json
examination = json.loads((logs / "simulation.json").read_text())["rank_parameters"]["examination"]
truth = [round(e / examination[0], 2) for e in examination]
config = TrainConfig(learner="dla", ranker="mlp", hidden=(32, 16), optimizer="adagrad", learning_rate=0.05,
                     bias_learning_rate=1.0, learner_options={"max_weight": 1e9}, epochs=2, eval_every=100,
                     patience=1000)
result = train(logs, dataset, config, progress=False)
print("true propensities:", truth)
print("DLA propensities: ", [round(p, 2) for p in result.propensities])
results.append({"learner": "dla (fast propensities)", **{k: v for k, v in result.test.items() if k != "num_queries"}})
table = pd.DataFrame(results)
table"""),
("md", """Randomised rankings (notebook 3) or many more queries make the propensities identifiable whatever the
learning rates; `docs/learners.md` reports the measurements on MQ2008 and Yahoo."""),
("code", """fig, ax = plt.subplots(figsize=(6, 4))
sns.barplot(data=table, x="learner", y="ndcg@10", ax=ax)
ax.tick_params(axis="x", rotation=20)
ax.set(ylim=(table["ndcg@10"].min() - 0.05, 1.0), title="test nDCG@10");"""),
], out / "02_from_clicks_to_rankers.ipynb")

notebook([
("md", """# 3. Estimating propensities with interventions

Without interventions, relevance and rank are confounded: the click-through rate per rank mixes both. Randomising
the shown ranking breaks the confound. We compare naive CTR with RandTop-k and swap interventions and with
intervention harvesting from several logging policies."""),
("code", """import tempfile
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from simulators.datasets import synthetic_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.propensity import estimate, true_examination

sns.set_theme(style="whitegrid")
dataset = synthetic_dataset(num_queries=300, docs_per_query=15, num_features=8, seed=0)
root = Path(tempfile.mkdtemp())
configs = {
    "plain": SimulationConfig(),
    "randtopk": SimulationConfig(intervention="randtopk"),
    "swap": SimulationConfig(intervention="swap", intervention_rate=0.5),
    "harvest": SimulationConfig(policies=("production", "production", "production", "production")),
}
for name, config in configs.items():
    Simulator(dataset, config, seed=0).run(root / name, 200_000, progress=False)"""),
("code", """estimates = {
    "ctr": estimate(root / "plain", "ctr", bootstrap=50),
    "randtopk": estimate(root / "randtopk", "randtopk", bootstrap=50),
    "swap": estimate(root / "swap", "swap", bootstrap=50),
    "pivot": estimate(root / "harvest", "pivot", bootstrap=20),
}
truth = true_examination(root / "plain")
for name, result in estimates.items():
    print(f"{name:>8}: max error {np.nanmax(np.abs(result.examination - truth)):.3f}")"""),
("code", """ranks = np.arange(1, 11)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(ranks, truth, color="black", linewidth=2, label="true")
for name, result in estimates.items():
    ax.plot(ranks, result.examination, marker="o", label=name)
    ax.fill_between(ranks, result.ci_low, result.ci_high, alpha=0.15)
ax.set(xlabel="rank", ylabel="examination (normalised at rank 1)", title="propensity estimates with 95% intervals")
ax.legend();"""),
], out / "03_estimating_propensities.ipynb")

notebook([
("md", """# 4. Two-stage ranking from clicks

Real systems rank in two stages: a cheap **candidate generator** narrows the query's whole pool to `K2`
candidates, and a **ranker** orders them and shows the top `K`. Both can be learnt from clicks
(Gupta, Liao and de Rijke, ICTIR 2025). Here we log clicks from a stochastic two-stage pipeline, compute
each document's **joint exposure** (its expected examination over both stages), check that the two-stage IPS
estimate is unbiased, compare the variance of two policy gradients for the candidate generator, and train
the pipeline."""),
("code", """import itertools, tempfile
from pathlib import Path
import jax, jax.numpy as jnp
import numpy as np
import matplotlib.pyplot as plt
import seaborn as sns
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from simulators.metadata import LogMetadata
from ultr.exposure import logging_exposure
from ultr.two_stage import (two_stage_exposure, two_stage_exposure_exact, reinforce_surrogates,
                            credit_assigned_surrogate)
from ultr.training import TrainConfig, train

sns.set_theme(style="whitegrid")"""),
("md", """**Joint exposure.** For a pool of 6 documents, 4 candidates and 2 shown ranks we can enumerate every
candidate draw and every ranking of it; the Monte-Carlo estimate (Gumbel-max sampling of both stages) agrees
within its standard error, at most `max θ / (2√samples)`."""),
("code", """candidate_scores = jnp.array([0.3, -0.5, 1.2, 0.0, 0.8, -1.0])
ranker_scores = jnp.array([1.0, 0.4, -0.2, 0.9, -0.7, 0.3])
theta = jnp.array([1.0, 0.6])
exact = two_stage_exposure_exact(candidate_scores, ranker_scores, theta, candidates=4)
sampled = two_stage_exposure(candidate_scores, ranker_scores, theta, candidates=4, key=jax.random.key(0),
                             samples=40_000)
print("exact      ", np.round(np.asarray(exact), 4))
print("Monte-Carlo", np.round(np.asarray(sampled), 4), " bound", round(1.0 / (2 * np.sqrt(40_000)), 4))"""),
("md", """**A two-stage log.** 30 queries with 200 documents each, 5% of them relevant. The logging pipeline draws 20
candidates per session by Plackett-Luce over a production ranker's scores, ranks them by Plackett-Luce over the
same scores, and shows the top 5; clicks follow the position-based model. The log records each session's
candidate set."""),
("code", """dataset = load_dataset("synthetic:queries=30,docs=200,features=10,relevant=5,seed=0")
logs = Path(tempfile.mkdtemp()) / "logs"
config = SimulationConfig(click_model="pbm", list_size=5, policies=("plackett-luce",), temperature=2.0,
                          candidates=20)
Simulator(dataset, config, seed=0).run(logs, 30_000, progress=False)
metadata = LogMetadata.read(logs)
rho0 = logging_exposure(metadata, dataset.train, metadata.true_examination(), samples=2_000)
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.boxplot(x=dataset.train.labels, y=rho0, ax=ax)
ax.set(yscale="log", xlabel="relevance grade", ylabel="joint exposure ρ₀(d)",
       title="The logging pipeline's exposure of each document");"""),
("md", """Every document has `ρ₀ > 0`: the IPS estimate `Σ_d ρ(d) c(d) / ρ₀(d)` of any other pipeline's value is
unbiased. The weights are large for rarely exposed documents, which is where the variance comes from.

**Policy gradients for the candidate generator.** REINFORCE credits every candidate with the whole set's
utility; the credit-assigned gradient (after Kiyohara et al., 2026) credits each document with its own rank
weight times relevance, through its inclusion probability. On a pool of 200 with 20 candidates and sparse
clicks, we draw 100 gradients of each and compare their total variance."""),
("code", """rng = np.random.default_rng(0)
sc = jnp.asarray(rng.normal(size=200), jnp.float32)
sr = jnp.asarray(rng.normal(size=200), jnp.float32)
relevance = jnp.asarray((rng.random(200) < 0.05) * 2.0, jnp.float32)
theta5 = jnp.array([1.0, 0.8, 0.6, 0.5, 0.4])
keys = jax.random.split(jax.random.key(1), 100)

def variance(surrogate):
    grads = jax.jit(jax.vmap(lambda key: jax.grad(lambda c: surrogate(key, c))(sc)))(keys)
    return float(np.sum(np.var(np.asarray(grads), axis=0)))

variances = {
    "REINFORCE": variance(lambda k, c: reinforce_surrogates(k, c, sr, relevance, theta5, candidates=20,
                                                            samples=16, baseline=False)[0]),
    "REINFORCE + baseline": variance(lambda k, c: reinforce_surrogates(k, c, sr, relevance, theta5,
                                                                       candidates=20, samples=16)[0]),
    "credit-assigned": variance(lambda k, c: credit_assigned_surrogate(k, c, sr, relevance, theta5,
                                                                       candidates=20, samples=16)),
}
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(list(variances), list(variances.values()))
ax.set(yscale="log", ylabel="total gradient variance", title="Candidate generator's policy gradient");
variances"""),
("md", """**Training.** The joint learner trains both stages, alternating, on the two-stage IPS objective; the
baselines are the logging pipeline itself and the ranker trained alone behind the logging candidate generator.
Each is evaluated as deployed: the generator's top 20 of the pool, ordered by the ranker. (150 steps:
enough to see the learners move; `experiments/two_stage.py` runs the full comparison.)"""),
("code", """results = {}
for name, learner in [("logging pipeline", "logging-policy"), ("ranker alone", "two-stage-ranker"),
                      ("joint", "two-stage")]:
    options = {"candidates": 20, "pipeline_samples": 8} if learner != "logging-policy" else {}
    result = train(logs, dataset, TrainConfig(learner=learner, propensities="oracle" if options else None,
                                              max_steps=150, eval_every=50, learner_options=options),
                   progress=False)
    results[name] = result.test["ndcg@10"]
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(list(results), list(results.values()))
ax.set(ylabel="test nDCG@10", title="Two-stage pipelines learnt from clicks");
results"""),
], out / "04_two_stage_ranking_from_clicks.ipynb")
