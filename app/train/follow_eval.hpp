// vaelab-train --follow RUNDIR: the headless evaluator beside a training job that writes a run
// folder (python/train_ddp.py). Each new weights file is scored on the test set and printed as one
// JSON line; not the follower itself (core/run_follow) and not the app's live view.
#pragma once
#include "app/flags/flags.hpp"

namespace vaelab {

// Follows args.follow until the run says it finished (exit code 0), evaluating every weights file
// that appears on the test images of args.data (args.eval_limit, args.iwae_k). Throws vaelab::Error
// for data that cannot be read; problems with the run's files are warnings on stderr.
int follow_and_evaluate(const flags::CommandLine& args);

}  // namespace vaelab
