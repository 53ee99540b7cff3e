#!/bin/sh
# make bench: polyc's tree kernels, and PyTorch's equivalents when Python
# has torch (pip install torch numpy), side by side in one run.
set -e
out=${1:-build/bench}
"$out/bench_tree" "$out/polyc.tsv"
if python3 -c "import torch" 2>/dev/null; then
	echo
	echo "PyTorch $(python3 -c 'import torch; print(torch.__version__)'), $(python3 -c 'import torch; print(torch.get_num_threads())') threads: same shapes, median seconds"
	python3 bench/torch_tree.py > "$out/torch.tsv"
	printf "%-13s %6s %10s %10s %9s\n" kernel n polyc torch speedup
	awk -F'\t' 'NR == FNR { t[$1 " " $2] = $3; next }
	            { printf "%-13s %6d %10.4f %10.4f %8.2fx\n", $1, $2, t[$1 " " $2], $3, $3 / t[$1 " " $2] }' \
	    "$out/polyc.tsv" "$out/torch.tsv"
	echo "(attn: torch.nn.functional.scaled_dot_product_attention, attn_causal with is_causal=True;"
	echo " trees: matmul + max-subtraction, path2_causal with -inf above the diagonal;"
	echo " decode_qNQ: NQ queries against n keys, polyc through K_call, torch SDPA with a"
	echo " boolean causal mask aligned bottom-right)"
else
	echo
	echo "PyTorch not found: 'pip install torch numpy' adds the comparison."
fi
