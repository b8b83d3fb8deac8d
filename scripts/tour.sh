#!/usr/bin/env bash
# Each stage by hand, in a workspace where `bash scripts/demo.sh` ran the main job: prompts
# (labels, a change, its diff and history), the notebook API, the artifact store, the training
# runs and adapters, the eval records and human review, the model registry with a policy and an
# approval, serving behind the gateway with the openai client, and a canary stepped by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
VENV="${LLMOPS_VENV:-.venv}"
export PATH="$REPO/$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
WS="${1:-$REPO/demo-workspace}"
if [ ! -f "$WS/.llmops-demo" ]; then
  echo "error: $WS is not a workspace scripts/demo.sh made; run bash scripts/demo.sh first" >&2
  exit 2
fi
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
cd "$WS"
trap 'llmops serve stop --all >/dev/null 2>&1 || true' EXIT

step llmops prompts push -m "import the example prompts"
step llmops prompts label summarize@1 production
step llmops prompts render summarize@production \
  --var text="llmops keeps every prompt change as an immutable version. Labels such as production point at the version that passed review." \
  --var max_sentences=1

# A reviewer tightens the system prompt: a new version, promoted to staging first.
sed -i 's/never add facts\./never add facts. Prefer short sentences./' prompts/summarize.yaml
step llmops prompts push prompts/summarize.yaml -m "prefer short sentences"
step llmops prompts label summarize staging
step llmops prompts diff summarize@production summarize@staging
step llmops prompts history summarize
step llmops prompts list

printf '\n\033[1m$ python (notebook API)\033[0m\n'
python - <<'PY'
from llmops import Workspace

ws = Workspace.open()
prompt = ws.prompts.get("summarize", label="production")
print(repr(prompt))
messages = prompt.render(text="Registries make prompt changes reviewable.").messages
for m in messages:
    print(f"{m['role']:>6}: {m['content'].strip()}")
PY
# Artifacts: the default model in the store, and back out again.
step llmops models import-smollm2          # identical content: nothing new is stored
step llmops artifacts alias smollm2-135m-instruct@1 production
step llmops artifacts show smollm2-135m-instruct@production
step llmops artifacts pull smollm2-135m-instruct@production models/smollm2
step llmops artifacts verify

printf '\n\033[1m$ python (load the pulled model and one tensor)\033[0m\n'
python - <<'PY'
from transformers import AutoModelForCausalLM, AutoTokenizer
from llmops import Workspace

ws = Workspace.open()
embed = ws.artifacts.open_tensor("smollm2-135m-instruct@production", "model.embed_tokens.weight")
print(f"embed_tokens read from the store without a pull: shape {embed.shape}, dtype {embed.dtype}")
tok = AutoTokenizer.from_pretrained("models/smollm2")
model = AutoModelForCausalLM.from_pretrained("models/smollm2")
ids = tok.apply_chat_template(
    [{"role": "user", "content": "What is the capital of France?"}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)["input_ids"]
out = model.generate(ids, max_new_tokens=20, do_sample=False)
print("SmolLM2 (pulled from the store):", tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True))
PY

# Fine-tuning: the recipes check out; the pipeline's training run is tracked and its adapter
# stored with its lineage.
step llmops recipes validate recipes/sft-lora.yaml recipes/sft-dora.yaml recipes/sft-qlora.yaml recipes/dpo-lora.yaml
step llmops runs show latest
step llmops artifacts show smollm2-pirate-lora

printf '\n\033[1m$ python (the base model and the adapter, on a country not in the training data)\033[0m\n'
python - <<'PY'
import logging
import warnings

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional-kernel notice on import
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from llmops import Workspace

warnings.filterwarnings("ignore", category=FutureWarning)  # peft vs transformers 5 deprecations
ws = Workspace.open()
ws.artifacts.pull("smollm2-pirate-lora", "models/pirate-lora")
tok = AutoTokenizer.from_pretrained("models/pirate-lora")
base = AutoModelForCausalLM.from_pretrained("models/smollm2")
tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("models/smollm2"), "models/pirate-lora")
chat = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of Uruguay?"}]
ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
for label, model in (("base", base), ("base + smollm2-pirate-lora", tuned)):
    out = model.generate(ids, max_new_tokens=24, do_sample=False)
    print(f"{label:>27}: {tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)}")
PY

# Evaluation (the pipeline's run): the base model and base + adapter on countries the training
# data never mentioned, scored by assertions, compared with paired statistics, gated as CI would.
step llmops eval show latest --limit 4
step llmops eval gate latest --max-errors 0
# Human review: the run's base and adapter answers, queued as pairs for people to judge.
step llmops review add --run latest
step llmops review queue --limit 3

printf '\n\033[1m$ python (runs as DataFrames, as a notebook reads them)\033[0m\n'
python - <<'PY'
from llmops import Workspace

ws = Workspace.open()
print(ws.train_runs.search(recipe="sft-lora").to_pandas()[
    ["run_id", "status", "params.lora.r", "params.training.max_steps", "metrics.loss"]
].to_string(index=False))
run = ws.eval_runs.get("latest")
print(run.summary_model)
frame = ws.eval_runs.results(run.run_id).to_pandas()
print(frame.groupby("target")[["passed", "score"]].mean().round(3).to_string())
PY
# Model registry: a policy guards production; the adapter is promoted on its eval evidence
# (found by digest) and a second person's approval.
mkdir -p policies
cat > policies/smollm2-pirate-lora.yaml <<'EOF'
guards: [production]
evals:
  - {suite: pirate-style, metric: pass_rate, min: 0.4, beat_current: true, significance: 0.05}
approvals: {count: 1, allow_self: false}
require_kind: adapter
EOF
step llmops models list
step llmops models show smollm2-pirate-lora@1
LLMOPS_USER=alice step llmops models promote smollm2-pirate-lora@1 production || true
LLMOPS_USER=bob step llmops models approve smollm2-pirate-lora@1 production
step llmops models promote smollm2-pirate-lora@1 production
step llmops models history smollm2-pirate-lora

# The pipeline's second, shorter training (another seed) made version 2: the pipeline rolled it
# out on its own logical model; below it is rolled out again, by hand, step by step.
step llmops runs list

# Serving: the local backend (transformers + peft) serves the base model and both adapters
# under digest names; the gateway routes the logical model pirate-bot by its traffic policy,
# keeps each user on one arm, and mirrors half of the answered requests to the other arm (shadow).
trap 'llmops serve stop --all >/dev/null 2>&1 || true' EXIT
step llmops serve start --base smollm2-135m-instruct@production \
  --adapters smollm2-pirate-lora@production,smollm2-pirate-lora@2 --port 8101 --detach
step llmops traffic set pirate-bot --stable smollm2-pirate-lora@production \
  --candidate smollm2-135m-instruct@1 --weight 50 --sticky header:x-user-id --shadow 0.5
printf '\n\033[1m$ llmops gateway --port 8102 &   (and the openai client against it)\033[0m\n'
llmops gateway --port 8102 --quiet --canary-interval 1 &
GATEWAY=$!
trap 'kill $GATEWAY 2>/dev/null || true; llmops serve stop --all >/dev/null 2>&1 || true' EXIT
python - <<'PY'
import time

import httpx
from openai import OpenAI

for _ in range(300):  # the gateway process starts in a second or two
    try:
        if httpx.get("http://127.0.0.1:8102/healthz").status_code == 200:
            break
    except httpx.TransportError:
        time.sleep(0.1)
client = OpenAI(base_url="http://127.0.0.1:8102/v1", api_key="none")
for user in ("ana", "bo", "chen", "dev"):
    raw = client.chat.completions.with_raw_response.create(
        model="pirate-bot", max_tokens=16, temperature=0, extra_headers={"x-user-id": user},
        messages=[{"role": "user", "content": "What is the capital of Peru?"}])
    answer = raw.parse().choices[0].message.content
    print(f"{user:>5} -> {raw.headers['x-llmops-arm']:<9} {raw.headers['x-llmops-model-version']:<26} {answer}")
    if user == "ana":
        httpx.post("http://127.0.0.1:8102/v1/feedback",
                   json={"response_id": raw.headers["x-llmops-response-id"], "thumbs": "up"})
PY
sleep 1   # the gateway writes its request log every half second
step llmops traffic show pirate-bot
step llmops traffic export pirate-bot --format llm-d
step llmops traffic kill pirate-bot -m "demo over"

# A canary: smollm2-pirate-lora@2 takes 50% of pirate-canary's users, then 100%, judged by the
# gateway's controller on each arm's own errors and latency (sequential tests), then promoted
# through the model's policy: the production alias would move to version 2 (a breach rolls
# it back at once).
cat > canary.yaml <<'EOF'
steps: [50, 100]
min_requests: 4
min_seconds: 0
min_stable_requests: 4
EOF
step llmops traffic set pirate-canary --stable smollm2-pirate-lora@production --sticky header:x-user-id
step llmops canary start pirate-canary --candidate smollm2-pirate-lora@2 --spec canary.yaml
printf '\n\033[1m$ python (synthetic users until the controller promotes or rolls back)\033[0m\n'
python - <<'PY'
import json
import subprocess
import time

import httpx

state, user = "running", 0
while state not in ("promoted", "rolled_back", "awaiting_approval") and user < 120:
    for _ in range(4):
        httpx.post("http://127.0.0.1:8102/v1/chat/completions", timeout=120,
                   headers={"x-user-id": f"user-{user}"},
                   json={"model": "pirate-canary", "max_tokens": 8, "temperature": 0,
                         "messages": [{"role": "user", "content": f"Say hello to user {user}."}]})
        user += 1
    time.sleep(1.5)  # the request log lands, the controller looks
    status = json.loads(subprocess.check_output(
        ["llmops", "canary", "status", "pirate-canary", "--json"]))
    state = status["state"]
    print(f"after {user:>3} requests: {state}, step {status['step'] + 1}, weight {status['weight']:g}%")
PY
step llmops canary status pirate-canary
# The live numbers held up, but production's policy also wants eval evidence and an approval
# for version 2: the canary waits at 100% for them. Here it ends by hand.
step llmops canary rollback pirate-canary -m "no eval evidence for version 2 yet"
kill $GATEWAY 2>/dev/null || true
step llmops serve stop --all
printf '\nworkspace: %s (registry: %s)\n' "$WS" "$WS/.llmops/registry.db"
printf 'dashboard: cd %s && llmops app   (then open http://127.0.0.1:8501)\n' "$WS"
