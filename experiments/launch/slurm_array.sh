#!/usr/bin/env bash
# One effsearch worker per GPU as a Slurm job array: every task joins the same study, through
# the storage named by $EFFSEARCH_STORAGE_URL, until the study's trial budget is met.
#
#   export EFFSEARCH_STORAGE_URL=grpc://proxy-host:13000   # or postgresql://user:pw@db/effsearch
#   sbatch --array=0-63 experiments/launch/slurm_array.sh experiments/cifar10_directions.py
#
# Up to about 30 workers may open PostgreSQL directly (three connections each against its
# default max_connections=100); past that, start `effsearch storage-proxy` on one host first
# and give the workers its grpc:// URL (README "Storage"). The URL travels in the environment
# (sbatch exports it by default), never in argv, where `ps` would show its password.
#SBATCH --job-name=effsearch
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=effsearch-%A_%a.out
set -euo pipefail

config="${1:?usage: sbatch experiments/launch/slurm_array.sh CONFIG.py}"
: "${EFFSEARCH_STORAGE_URL:?export EFFSEARCH_STORAGE_URL (grpc://HOST:PORT or postgresql://...) before sbatch}"
# The task's slot seeds its sampler, so no two workers propose one sequence.
export EFFSEARCH_WORKER_SLOT="${SLURM_ARRAY_TASK_ID:-0}"
# Logs, and halving's checkpoints, on the filesystem every node shares (the submit folder,
# unless told otherwise): a promotion may run on another node than the trial it continues.
workdir="${EFFSEARCH_WORKDIR:-${SLURM_SUBMIT_DIR:-$PWD}/effsearch-runs}"
# Slurm's --gres sets CUDA_VISIBLE_DEVICES to this task's GPU; one worker keeps it as it is.
exec effsearch search "$config" --workers 1 --workdir "$workdir"
