PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test test-slow lint bench bench-quant demo

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

# Two pytest-xdist workers per run at most (one per core here); files stay whole on a worker, and the workers
# share the tiny test artifacts (tests/conftest.py). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --maxprocesses 2 --dist loadfile

test:
	$(BIN)/python -m pytest -q $(XDIST) --durations=25

test-slow:
	$(BIN)/python -m pytest -q $(XDIST) -m slow

lint:
	$(BIN)/ruff check birefnet_edge tests benchmarks
	$(BIN)/ruff format --check birefnet_edge tests benchmarks

bench:
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_deform.py
	$(BIN)/python benchmarks/bench_export.py
	$(BIN)/python benchmarks/bench_runtime.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_distill.py
	$(BIN)/python benchmarks/bench_students.py
	$(BIN)/python benchmarks/bench_distill_faults.py
	$(BIN)/python benchmarks/bench_teacher.py
	$(BIN)/python benchmarks/bench_learning.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_mobile.py
	$(BIN)/python benchmarks/bench_quant.py $(QUANT_ARGS)

# int8/bf16 beside fp32 alone; e.g. make bench-quant QUANT_ARGS="--size 512 --batch 1 --keep /tmp/q"
bench-quant:
	$(BIN)/python benchmarks/bench_quant.py $(QUANT_ARGS)

demo:
	$(BIN)/birefnet-edge pipeline --weights random:BiRefNet_lite --size 512 --runs 2 --warmup 1 \
		--target onnx-fp32 --target onnx-fp16 --target openvino-fp32 --target openvino-fp16 \
		--target coreml-fp16 --target tensorrt-fp16 --out dist/demo
	@echo "report: dist/demo/report/report.html (summary: dist/demo/report/summary.md)"
