// safetensors import/export: an 8-byte little-endian header length, a JSON header, then raw
// little-endian tensors. vaelab writes F32 only and reads F32 (plus F16/BF16/F64 converted).
// PyTorch's examples/vae names (fc1, fc21, fc22, fc3, fc4; weights [out, in] row-major) are
// used for one hidden layer, so a model trained in PyTorch can be explored here and back.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/model.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;  // row-major
  std::vector<float> data;
};

struct SafetensorsFile {
  std::vector<Tensor> tensors;                    // in file order
  std::map<std::string, std::string> metadata;    // the "__metadata__" entry
  const Tensor* find(const std::string& name) const;
};

// Serialise to bytes / parse bytes (throws vaelab::Error on anything malformed).
std::vector<std::uint8_t> encode_safetensors(const SafetensorsFile& f);
SafetensorsFile decode_safetensors(const std::uint8_t* bytes, std::size_t size);

void write_safetensors(const std::filesystem::path& file, const SafetensorsFile& f);  // atomic
// Called with the tensors' names and shapes (no data yet) and the metadata, after the header's own
// checks and before the data is read: it throws vaelab::Error to refuse the file unread.
using ShapeCheck = std::function<void(const SafetensorsFile& shapes)>;
// Reads a regular file (a FIFO or device is refused unopened), header first. Throws vaelab::Error.
SafetensorsFile read_safetensors(const std::filesystem::path& file, const ShapeCheck& check_shapes = {},
                                 const CancelFlag* cancel = nullptr);

// Model ↔ tensors with PyTorch names. Layer naming (encoder input → head, decoder z → output):
// one hidden layer: fc1, fc21 (μ), fc22 (log σ²), fc3, fc4. More hidden layers:
// encoder.{i}, fc21, fc22, decoder.{i}. Metadata records image size, latent size and likelihood;
// colour models also image_c = 3 (a file without image_c is grey).
SafetensorsFile export_model(const Model& model);
// Infers the config from shapes and metadata; throws vaelab::Error when names or shapes don't fit.
Model import_model(const SafetensorsFile& f);
// import_model's checks of names, shapes and metadata alone (the tensors' data may be empty): a
// ShapeCheck for read_safetensors. Throws vaelab::Error.
void check_importable(const SafetensorsFile& shapes);
// The same checks, returning the settings of the model the file describes (for a memory check
// before the data is read).
ModelConfig importable_config(const SafetensorsFile& shapes);
// read_safetensors then import_model, refusing a file whose header does not describe a model
// vaelab can import before its data is read.
Model import_model_file(const std::filesystem::path& file, const CancelFlag* cancel = nullptr);

}  // namespace vaelab
