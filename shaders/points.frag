// Round, softly edged point sprite with a darker rim so overlapping classes stay readable.
// Not lit, not depth-tested: later points simply draw over earlier ones.
#version 330 core
in vec3 v_colour;
out vec4 frag;
uniform float u_alpha;
uniform float u_point_px;
void main() {
  vec2 d = gl_PointCoord * 2.0 - 1.0;
  float r = length(d);
  float edge = 1.5 / max(u_point_px, 1.0);        // about one pixel of anti-aliasing
  float a = 1.0 - smoothstep(1.0 - edge, 1.0, r);
  if (a <= 0.0) discard;
  float rim = smoothstep(0.55, 0.9, r);
  frag = vec4(mix(v_colour, v_colour * 0.55, rim * 0.6), a * u_alpha);
}
