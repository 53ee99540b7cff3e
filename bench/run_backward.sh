#!/bin/sh
# make bench-backward: polyc's training pair (K, K_train, K_backward of
# bench/backward.poly) beside PyTorch autograd when Python has torch (pip
# install torch numpy), in one run: first polyc's gradients against
# PyTorch's at every shape timed (Strassen and 3-tensor at their smallest
# n), then both tables and their ratios for the trees, then for Strassen
# and 3-tensor, then the peak RSS of a tree backward at n = 25,000 and
# 100,000, then the approximate tree and Strassen trained at n = 4096 …
# 65536.
# usage: run_backward.sh [BUILD/bench]; exit status 1 if a gradient is off.
set -e
out=${1:-build/bench}
bin=$out/bench_backward
status=0
if python3 -c "import torch, numpy" 2>/dev/null; then
	torch=1
else
	torch=0
fi

if [ $torch = 1 ]; then
	dump=$out/backward_dump
	rm -rf "$dump" && mkdir -p "$dump"
	"$bin" --dump "$dump"
	python3 bench/torch_backward.py --check "$dump" || status=1
	rm -rf "$dump"
	[ $status = 0 ] || echo "polyc's gradients DISAGREE with PyTorch's (above): the figures below time wrong code"
	echo
else
	echo "PyTorch not found: 'pip install torch numpy' adds the gradient check and the comparison."
	echo
fi

"$bin" "$out/backward_polyc.tsv"

if [ $torch = 1 ]; then
	echo
	echo "PyTorch $(python3 -c 'import torch; print(torch.__version__)'), CPU, float32, 2 threads" \
	     "(torch.set_num_threads(2)), same shapes: median seconds and GFLOP/s (flops counted as above)"
	python3 bench/torch_backward.py > "$out/backward_torch.tsv"
	printf "%-6s %6s  %9s %6s  %9s %6s  %9s %9s  %8s %10s\n" kernel n "torch fwd" "GF/s" \
	    "fwd+bwd" "GF/s" "polyc fwd" "train+bwd" "fwd x" "fwd+bwd x"
	awk -F'\t' 'NR == FNR { t[$1 " " $2] = $3; tb[$1 " " $2] = $4; next }
	            { e = $1 == "attn" ? 1 : 2; fl = 4 * e * 4.0 * $2 * $2 * 64 / 1e9; k = $1 " " $2
	              if (!(k in t)) { printf "%-6s %6d  %9s %6s  %9s %6s  %9.4f %9.4f\n",
	                               $1, $2, "-", "", "-", "", $3, $6; next }
	              printf "%-6s %6d  %9.4f %6.1f  %9.4f %6.1f  %9.4f %9.4f  %7.2fx %9.2fx\n",
	                     $1, $2, t[k], fl / t[k], tb[k], 3.5 * fl / tb[k], $3, $6,
	                     t[k] / $3, tb[k] / $6 }' \
	    "$out/backward_torch.tsv" "$out/backward_polyc.tsv"
	echo "(fwd x, fwd+bwd x: PyTorch's seconds over polyc's forward, over polyc's train+backward;"
	echo " attn: scaled_dot_product_attention; path2: matmul, logsumexp, softmax, matmul under autograd;"
	echo " path2 at n = 16384: polyc only, its n x n matrices (4.3 GB each at batch 4) do not fit in memory)"
fi

echo
"$bin" -g "$out/backward_general_polyc.tsv"
if [ $torch = 1 ]; then
	echo
	echo "PyTorch autograd of the einsum formulation (n^3 score tensor, softmax, einsum), 2 threads," \
	     "batch 1: median seconds of 3 rounds"
	python3 bench/torch_backward.py --general > "$out/backward_general_torch.tsv"
	printf "%-8s %6s  %9s %9s  %9s %9s  %8s %10s\n" kernel n "torch fwd" "fwd+bwd" \
	    "polyc fwd" "train+bwd" "fwd x" "fwd+bwd x"
	awk -F'\t' 'NR == FNR { t[$1 " " $2] = $3; tb[$1 " " $2] = $4; next }
	            { k = $1 " " $2
	              if (!(k in t)) { printf "%-8s %6d  %9s %9s  %9.4f %9.4f  (PyTorch not run: autograd holds several n^3 tensors)\n",
	                               $1, $2, "-", "-", $3, $6; next }
	              printf "%-8s %6d  %9.4f %9.4f  %9.4f %9.4f  %7.2fx %9.2fx\n",
	                     $1, $2, t[k], tb[k], $3, $6, t[k] / $3, tb[k] / $6 }' \
	    "$out/backward_general_torch.tsv" "$out/backward_general_polyc.tsv"
	echo "(fwd x, fwd+bwd x: PyTorch's seconds over polyc's forward, over polyc's train+backward)"
fi

echo
echo "peak memory of big (x1*x2 + x2*x3, values x3, head_dim = value_dim = 16, batch 1): K_train then K_backward"
rm -f "$out/backward_mem.tsv"
for n in 25000 100000; do
	"$bin" --memory $n "$out/backward_mem.tsv"
done
awk -F'\t' 'NR == 1 { n = $1; s = $2; r = $3; w = $4 }
            NR == 2 { printf "n %d / %d = %.1fx: saved_floats %.2fx, peak RSS %.2fx, the calls'"'"' own" \
                             " memory (peak after backward - before) %.2fx; linear: %.1fx, n^2: %.1fx\n",
                      $1, n, $1 / n, $2 / s, $3 / r, $4 / w, $1 / n, ($1 / n) ^ 2 }' "$out/backward_mem.tsv"
echo
echo "approximate kernels: training forward and backward, linear in n (bench/approx_backward.poly)"
"$bin" --approx
exit $status
