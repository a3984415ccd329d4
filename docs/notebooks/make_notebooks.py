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
