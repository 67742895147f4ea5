// Latent scatter: one point sprite per encoded test image, positioned in plane coordinates and
// coloured by label. The view (pan/zoom) is a scale and offset to clip space. Not a line renderer.
#version 330 core
layout(location = 0) in vec2 a_pos;
layout(location = 1) in uint a_label;  // 255: no label
uniform vec2 u_center;      // plane coordinates at the middle of the view
uniform vec2 u_scale;       // plane units → clip units
uniform float u_point_px;
uniform vec3 u_palette[16];
uniform vec3 u_unlabelled;
uniform int u_palette_size;
out vec3 v_colour;
void main() {
  gl_Position = vec4((a_pos - u_center) * u_scale, 0.0, 1.0);
  gl_PointSize = u_point_px;
  v_colour = a_label == 255u || u_palette_size == 0 ? u_unlabelled : u_palette[int(a_label) % u_palette_size];
}
