// Maps a one-channel float image in [0, 1] to colour through a 256-entry lookup texture (grey or
// viridis). Negative values mark gaps between tiles and take the background colour.
// Not a tone mapper: values are clamped, not rescaled.
#version 330 core
in vec2 v_uv;
out vec4 frag;
uniform sampler2D u_values;    // R32F, one texel per image pixel
uniform sampler2D u_colormap;  // 256 x 1 RGB8
uniform vec4 u_background;
void main() {
  float v = texture(u_values, v_uv).r;
  if (v < 0.0) {
    frag = u_background;
    return;
  }
  float t = clamp(v, 0.0, 1.0);
  // Sample texel centres so 0 and 1 hit the first and last entry exactly.
  frag = vec4(texture(u_colormap, vec2((t * 255.0 + 0.5) / 256.0, 0.5)).rgb, 1.0);
}
