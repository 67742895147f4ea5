// Reading a command line against the flag table (see flags.hpp) and printing --help from it.
// Not the table itself (table.cpp): nothing here names a particular flag except --help's layout.
#include "app/flags/flags.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "core/error.hpp"

namespace vaelab::flags {
namespace {

bool takes(const Flag& flag, Program program) { return (flag.programs & static_cast<unsigned>(program)) != 0; }

const char* program_name(Program program) { return program == Program::App ? "vaelab" : "vaelab-train"; }

const Flag* find(std::string_view spelling, Program program, const Flag** other_program) {
  for (const Flag& flag : table()) {
    if (flag.name != spelling && (flag.alias.empty() || flag.alias != spelling)) continue;
    if (takes(flag, program)) return &flag;
    *other_program = &flag;
  }
  return nullptr;
}

[[noreturn]] void refuse(const Flag& flag, const std::string& wanted, const std::string& value) {
  throw UsageError(std::string(flag.name) + " wants " + wanted + ", not '" + value + "'");
}

template <class T>
bool read_exactly(const std::string& text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

long long read_whole(const Flag& flag, const std::string& text) {
  const auto& range = std::get<WholeRange>(flag.range);
  long long value = 0;
  if (!read_exactly(text, value) || !range.contains(value)) {
    const std::string span = range.hi >= INT_MAX ? "of " + range.describe() : "from " + range.describe();
    refuse(flag, "a whole number " + span, text);
  }
  return value;
}

double read_real(const Flag& flag, const std::string& text) {
  const auto& range = std::get<RealRange>(flag.range);
  double value = 0;
  if (!read_exactly(text, value) || !range.contains(value)) refuse(flag, "a number " + range.describe(), text);
  return value;
}

// Applies one value (given, or the table's default) to its field.
void apply(const Flag& flag, CommandLine& c, const std::string& text) {
  struct Visitor {
    const Flag& flag;
    CommandLine& c;
    const std::string& text;
    void operator()(SwitchField field) const { field(c) = true; }
    void operator()(IntField field) const { field(c) = static_cast<int>(read_whole(flag, text)); }
    void operator()(Int64Field field) const { field(c) = read_whole(flag, text); }
    void operator()(Uint64Field field) const { field(c) = static_cast<std::uint64_t>(read_whole(flag, text)); }
    void operator()(FloatField field) const { field(c) = static_cast<float>(read_real(flag, text)); }
    void operator()(DoubleField field) const { field(c) = read_real(flag, text); }
    void operator()(TextField field) const {
      if (text.empty()) throw UsageError(std::string(flag.name) + " wants a " + std::string(flag.value_name) + ", not ''");
      field(c) = text;
    }
    void operator()(WidthsField field) const {
      std::string error;
      if (!parse_hidden(text, field(c), error)) throw UsageError(std::string(flag.name) + ": " + error);
    }
    void operator()(CustomReader read) const {
      try {
        read(c, text);
      } catch (const Error& e) {
        throw UsageError(std::string(flag.name) + ": " + e.what());
      }
    }
  };
  std::visit(Visitor{flag, c, text}, flag.target);
}

bool is_switch(const Flag& flag) { return std::holds_alternative<SwitchField>(flag.target); }

constexpr std::size_t kHelpWidth = 98;  // characters per --help line

// The help's words, then "(default …)" as one word so that it is never split.
std::vector<std::string> help_words(const Flag& flag) {
  std::vector<std::string> words;
  std::size_t pos = 0;
  while (pos < flag.help.size()) {
    const std::size_t end = std::min(flag.help.find(' ', pos), flag.help.size());
    if (end > pos) words.emplace_back(flag.help.substr(pos, end - pos));
    pos = end + 1;
  }
  if (!flag.default_value.empty() || !flag.default_note.empty()) {
    std::string clause = "(default";
    if (!flag.default_value.empty()) clause.append(" ").append(flag.default_value);
    if (!flag.default_note.empty()) clause.append(flag.default_value.empty() ? " " : ", ").append(flag.default_note);
    words.push_back(clause.append(")"));
  }
  return words;
}

// "  --latent N            latent dimensions (default 2)", wrapped at kHelpWidth with continuation
// lines indented to the help column. Built with append: GCC 12 misreads operator+ chains on
// std::string here (-Wrestrict, bug 105329).
void append_help_line(std::string& out, const Flag& flag, std::size_t column) {
  std::size_t line_start = out.size();
  auto new_line = [&] {
    out.push_back('\n');
    line_start = out.size();
    out.append(column, ' ');
  };
  out.append("  ").append(flag.name);
  if (!flag.value_name.empty()) out.append(" ").append(flag.value_name);
  if (out.size() - line_start + 1 > column) new_line();
  else out.append(column - (out.size() - line_start), ' ');
  bool first = true;
  for (const std::string& word : help_words(flag)) {
    if (!first && out.size() - line_start + 1 + word.size() > kHelpWidth) new_line();
    else if (!first) out.push_back(' ');
    out.append(word);
    first = false;
  }
  out.push_back('\n');
}

}  // namespace

bool CommandLine::was_given(std::string_view flag) const {
  return std::find(given.begin(), given.end(), flag) != given.end();
}

CommandLine parse(Program program, const std::vector<std::string>& args) {
  CommandLine c;
  for (const Flag& flag : table())
    if (takes(flag, program) && !flag.default_value.empty()) apply(flag, c, std::string(flag.default_value));
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& spelling = args[i];
    if (spelling.rfind("-", 0) != 0) throw UsageError("unexpected argument '" + spelling + "' (flags start with --)");
    const Flag* other_program = nullptr;
    const Flag* flag = find(spelling, program, &other_program);
    if (!flag && other_program)
      throw UsageError(spelling + " is a flag of " + program_name(program == Program::App ? Program::Train : Program::App) +
                       ", not of " + program_name(program));
    if (!flag) throw UsageError("unknown flag '" + spelling + "' (see --help)");
    if (flag->name == "--help") {  // the rest of the line is not read: help is shown as asked
      apply(*flag, c, "");
      return c;
    }
    if (is_switch(*flag)) {
      apply(*flag, c, "");
    } else {
      if (i + 1 >= args.size()) throw UsageError(std::string(flag->name) + " needs a value");
      apply(*flag, c, args[++i]);
    }
    c.given.emplace_back(flag->name);
  }
  return c;
}

std::string usage(Program program, bool developer) {
  std::size_t column = 0;
  for (const Flag& flag : table())
    if (takes(flag, program))
      column = std::max(column, 2 + flag.name.size() + (flag.value_name.empty() ? 0 : 1 + flag.value_name.size()) + 2);
  column = std::min<std::size_t>(column, 26);  // a longer name and value go on a line of their own
  std::string out(usage_text(program).head);
  for (const Flag& flag : table())
    if (takes(flag, program) && !flag.developer) append_help_line(out, flag, column);
  if (developer) {
    out += "\nDeveloper flags (test hooks):\n";
    for (const Flag& flag : table())
      if (takes(flag, program) && flag.developer) append_help_line(out, flag, column);
  }
  out += usage_text(program).tail;
  return out;
}

bool developer_flags_wanted() {
  const char* v = std::getenv("VAELAB_DEVELOPER_FLAGS");
  return v && *v && std::string_view(v) != "0";
}

}  // namespace vaelab::flags
