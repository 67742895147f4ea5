// vaelab-train --follow: waits for a run folder, evaluates each weights file written into it, and
// exits once the writer's {"finished": true} line has come and the final weights are scored.
#include "app/train/follow_eval.hpp"
#include "app/train/json_number.hpp"

#include <cmath>
#include <cstdio>
#include <string>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "core/evaluation.hpp"
#include "core/run_follow.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {
namespace {

// One line per weights file: {"step","epoch","test_elbo","test_recon","test_kl"[,"test_iwae"]}.
void print_weights_json(const FollowedWeights& w, const EpochRecord& r, bool with_iwae) {
  std::string s = "{\"step\":" + std::to_string(w.step) + ",\"epoch\":" + json_number(w.epoch) +
                  ",\"test_elbo\":" + json_number(r.test_elbo) + ",\"test_recon\":" + json_number(r.test_recon) +
                  ",\"test_kl\":" + json_number(r.test_kl);
  if (with_iwae) s += ",\"test_iwae\":" + json_number(r.test_iwae);
  s += "}";
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

// The model's image size and channels must be the data's: evaluate() does not check them.
bool fits(const Model& model, const ImageSet& test) {
  const ModelConfig& m = model.config();
  return m.image_c == test.channels && m.image_h == test.height && m.image_w == test.width;
}

}  // namespace

int follow_and_evaluate(const flags::CommandLine& args) {
  const auto folder = args.data.empty() ? default_data_folder() : std::filesystem::path(args.data);
  const Dataset data = load_dataset(folder, args.data_options);
  for (const std::string& note : data.notes) std::fprintf(stderr, "vaelab-train: note: %s\n", note.c_str());
  ThreadPool pool(std::max(1, args.train.threads));
  RunFollower follower(args.follow);
  std::fprintf(stderr, "following %s (%s); evaluating on %d test images of %s\n", args.follow.c_str(),
               follower.using_inotify() ? "inotify" : "polling",
               args.eval_limit > 0 ? std::min(args.eval_limit, data.test.count) : data.test.count,
               folder.string().c_str());
  bool waiting_noted = false;
  for (;;) {
    const FollowUpdate update = follower.poll(std::chrono::milliseconds(500));
    for (const auto& problem : update.problems) std::fprintf(stderr, "vaelab-train: warning: %s\n", problem.c_str());
    if (update.weights) {
      const FollowedWeights& w = *update.weights;
      if (!fits(*w.model, data.test)) {
        const ModelConfig& m = w.model->config();
        const bool channels_differ = m.image_c != data.test.channels;
        std::fprintf(stderr, "vaelab-train: warning: the weights of step %lld are for %s images, the data's are %s: not evaluated\n",
                     static_cast<long long>(w.step), image_shape_text(m, channels_differ).c_str(),
                     image_shape_text(data.test.channels, data.test.height, data.test.width, channels_differ).c_str());
      } else {
        EpochRecord rec;
        TestEvaluation how;
        how.limit = args.eval_limit;
        how.iwae_k = args.iwae_k;
        how.seed = args.train.seed + 1000;
        evaluate_test_set(*w.model, data.test, how, &pool, rec);
        print_weights_json(w, rec, args.iwae_k > 0);
        std::fprintf(stderr, "step %lld: test ELBO %.2f (recon %.2f, KL %.2f)\n", static_cast<long long>(w.step),
                     rec.test_elbo, rec.test_recon, rec.test_kl);
      }
    }
    if (update.finished) {
      std::fprintf(stderr, "the run finished\n");
      return 0;
    }
    if (!waiting_noted && !follower.last_weights()) {
      std::fprintf(stderr, "waiting for %s/%s\n", args.follow.c_str(), kRunWeightsFile);
      waiting_noted = true;
    }
  }
}

}  // namespace vaelab
