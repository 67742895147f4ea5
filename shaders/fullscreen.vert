// A full-viewport triangle from gl_VertexID alone (no vertex buffer); passes texture coordinates.
// Used by the image colormap pass. Not for geometry.
#version 330 core
out vec2 v_uv;
void main() {
  vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);  // (0,0) (2,0) (0,2)
  v_uv = p;
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
