/* plot_svg: panels of series drawn as one self-contained SVG 1.1 document.
 * By hand because no Debian C library draws a chart into a standalone SVG
 * without pulling in a toolkit (docs/plot.md). The output is meant to be
 * read as text too: one <path> per series, its name in a <title>. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"
#include "util.h"

/* the plot area inside a panel, in px */
#define PW 640     /* panel width */
#define PL 72      /* left margin: y tick labels and the y label */
#define PR 24      /* right margin */
#define PT 40      /* top margin: the panel title */
#define PH 300     /* plot area height */
#define PB 52      /* below the plot area: x tick labels and the x label */
#define LEG_H 17   /* one legend line */
#define DOC_T 30   /* the document title's band */

/* colour-blind safe (Okabe-Ito), then greys: run i gets colour i */
static const char *const plot_palette[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                                           "#e69f00", "#56b4e9", "#000000", "#999999"};
#define N_PAL ((int)(sizeof plot_palette / sizeof *plot_palette))

/* ---- building panels ---- */

int plot_panel_init(plot_panel *p, const char *title, const char *xlabel, const char *ylabel) {
  memset(p, 0, sizeof *p);
  p->title = util_strdup(title ? title : "");
  p->xlabel = util_strdup(xlabel ? xlabel : "");
  p->ylabel = util_strdup(ylabel ? ylabel : "");
  if (!p->title || !p->xlabel || !p->ylabel) {
    plot_panel_free(p);
    return util_err("out of memory: plot panel");
  }
  return 0;
}

plot_series *plot_panel_add(plot_panel *p, const char *name, int style, int color) {
  plot_series *s = util_realloc(p->s, (size_t)(p->n + 1) * sizeof *s, "plot series");
  if (!s) return NULL;
  p->s = s;
  s = &p->s[p->n];
  memset(s, 0, sizeof *s);
  if (name && !(s->name = util_strdup(name))) return NULL;
  s->style = style;
  s->color = color;
  p->n++;
  return s;
}

int plot_series_push(plot_series *s, double x, double y) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    double *nx = util_realloc(s->x, cap * sizeof *nx, "plot points");
    if (!nx) return -1;
    s->x = nx;
    double *ny = util_realloc(s->y, cap * sizeof *ny, "plot points");
    if (!ny) return -1;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n++] = y;
  return 0;
}

int plot_panel_cat(plot_panel *p, const char *name) {
  for (int i = 0; i < p->n_cats; i++)
    if (!strcmp(p->cats[i], name)) return i;
  char **c = util_realloc(p->cats, (size_t)(p->n_cats + 1) * sizeof *c, "plot categories");
  if (!c) return -1;
  p->cats = c;
  if (!(c[p->n_cats] = util_strdup(name))) return -1;
  return p->n_cats++;
}

void plot_panel_free(plot_panel *p) {
  free(p->title);
  free(p->xlabel);
  free(p->ylabel);
  for (int i = 0; i < p->n_cats; i++) free(p->cats[i]);
  free(p->cats);
  for (int i = 0; i < p->n; i++) {
    free(p->s[i].name);
    free(p->s[i].x);
    free(p->s[i].y);
  }
  free(p->s);
  memset(p, 0, sizeof *p);
}

/* ---- text ---- */

int plot_xml_escape(util_buf *out, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    const char *ent = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&quot;"
                    : c == '\'' ? "&#39;" : NULL;
    if (ent) {
      if (util_buf_add(out, ent, strlen(ent))) return -1;
      i++;
    } else if (c < 0x20 || c == 0x7f) { /* XML 1.0 forbids most controls; none belongs in a label */
      if (util_buf_add(out, "?", 1)) return -1;
      i++;
    } else if (c < 0x80) {
      if (util_buf_add(out, s + i, 1)) return -1;
      i++;
    } else {
      /* one whole valid UTF-8 sequence, or '?' for the first byte of a bad one */
      size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      if (i + len > n || util_utf8_invalid_at(s + i, len) >= 0) {
        if (util_buf_add(out, "?", 1)) return -1;
        i++;
      } else {
        if (util_buf_add(out, s + i, len)) return -1;
        i += len;
      }
    }
  }
  return 0;
}

/* ---- axes ---- */

typedef struct {
  int log, cat;
  double lo, hi;     /* the domain (log10 of it on a log axis) */
  double ticks[64];  /* tick values (data units) */
  int n_ticks;
  double step;       /* linear tick step, for the labels' decimals; 0 on whole decades */
} plot_axis;

static int plot_usable(double v, int log) { return isfinite(v) && (!log || v > 0); }

/* 1, 2 or 5 times a power of ten, near `x` */
static double plot_nice(double x) {
  double e = pow(10, floor(log10(x))), f = x / e;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * e;
}

/* ticks every `step` from lo to hi (both multiples of step) */
static void plot_linear_ticks(plot_axis *a, double lo, double hi, double step) {
  a->step = step;
  a->n_ticks = 0;
  for (double k = ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && a->n_ticks < 64; k++)
    a->ticks[a->n_ticks++] = k * step == 0 ? 0 : k * step; /* no "-0" */
}

/* The axis over the usable values of dimension `dim` (0 x, 1 y) of p's series. */
static void plot_axis_fit(plot_axis *a, const plot_panel *p, int dim) {
  memset(a, 0, sizeof *a);
  a->log = dim ? p->log_y : p->log_x;
  if (dim == 0 && p->cats) {
    a->cat = 1;
    a->lo = -0.5;
    a->hi = p->n_cats - 0.5;
    for (int i = 0; i < p->n_cats && i < 64; i++) a->ticks[a->n_ticks++] = i;
    return;
  }
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < p->n; i++)
    for (size_t j = 0; j < p->s[i].n; j++) {
      double x = p->s[i].x[j], y = p->s[i].y[j];
      if (!plot_usable(x, p->log_x) || !plot_usable(y, p->log_y)) continue;
      double v = dim ? y : x;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  if (lo > hi) lo = a->log ? 1 : 0, hi = a->log ? 10 : 1; /* nothing to show: an empty frame */
  /* a margin so no point sits on the frame: always for y, for x when only
   * markers are drawn (lines may start and end at the frame) */
  int markers_only = p->n > 0;
  for (int i = 0; i < p->n; i++) markers_only &= p->s[i].style == PLOT_POINTS || p->s[i].style == PLOT_DIAMONDS;
  if ((dim == 1 || markers_only) && hi > lo) {
    double d = a->log ? pow(hi / lo, 0.03) : (hi - lo) * 0.03;
    if (a->log) lo /= d, hi *= d;
    else lo -= d, hi += d;
  }
  if (a->log) {
    double l0 = floor(log10(lo)), l1 = ceil(log10(hi));
    if (l1 - l0 >= 2 || (l1 - l0 >= 1 && hi / lo >= 10)) { /* whole decades, 2 and 5 between few of them */
      if (l1 == l0) l1++;
      a->lo = l0, a->hi = l1;
      for (double e = l0; e <= l1 && a->n_ticks < 60; e++) {
        a->ticks[a->n_ticks++] = pow(10, e);
        if (l1 - l0 <= 2 && e < l1) a->ticks[a->n_ticks++] = 2 * pow(10, e), a->ticks[a->n_ticks++] = 5 * pow(10, e);
      }
      a->step = 0; /* each label's own decimals */
    } else { /* less than a decade: linear nice ticks, placed on the log scale */
      if (hi == lo) lo /= 1.5, hi *= 1.5;
      double pad = pow(hi / lo, 0.04);
      a->lo = log10(lo / pad), a->hi = log10(hi * pad);
      plot_linear_ticks(a, lo / pad, hi * pad, plot_nice((hi - lo) / 5));
    }
    return;
  }
  if (hi == lo) {
    double d = lo == 0 ? 1 : fabs(lo) * 0.1;
    lo -= d, hi += d;
  }
  double step = plot_nice((hi - lo) / 6);
  a->lo = floor(lo / step) * step;
  a->hi = ceil(hi / step) * step;
  plot_linear_ticks(a, a->lo, a->hi, step);
}

/* data value -> 0..1 along the axis */
static double plot_frac(const plot_axis *a, double v) {
  double t = a->log ? log10(v) : v;
  return (t - a->lo) / (a->hi - a->lo);
}

/* A tick label: thousands as k, millions as M, decimals from the step. */
static void plot_fmt(char *out, size_t cap, double v, double step) {
  double av = fabs(v);
  if (v == 0) snprintf(out, cap, "0");
  else if (av >= 1e9) snprintf(out, cap, "%gG", v / 1e9);
  else if (av >= 1e6) snprintf(out, cap, "%gM", v / 1e6);
  else if (av >= 1e4) snprintf(out, cap, "%gk", v / 1e3);
  else if (av < 1e-3) snprintf(out, cap, "%.0e", v);
  else {
    int dec = step > 0 ? (int)-floor(log10(step) + 1e-9) : 0;
    if (av < step * 0.999) dec = (int)-floor(log10(av) + 1e-9); /* a log axis' 0.02 under a step of 0.01 */
    dec = dec < 0 ? 0 : dec > 6 ? 6 : dec;
    snprintf(out, cap, "%.*f", dec, v);
  }
}

/* ---- drawing ---- */

static int plot_legend_lines(const plot_panel *p) {
  int n = 0;
  for (int i = 0; i < p->n; i++) n += p->s[i].name != NULL;
  return n;
}

static int plot_panel_height(const plot_panel *p) { return PT + PH + PB + LEG_H * plot_legend_lines(p) + 8; }

/* the style attribute part that differs per series kind (plot.h's PLOT_*) */
static const char *plot_style_class(int style) {
  switch (style) {
  case PLOT_FAINT: return "faint";
  case PLOT_LINE_DOTS: return "dots";
  case PLOT_POINTS: return "points";
  case PLOT_DIAMONDS: return "diamonds";
  default: return "line";
  }
}

static int plot_draw_panel(util_buf *b, const plot_panel *p, double ox, double oy) {
  plot_axis ax, ay;
  plot_axis_fit(&ax, p, 0);
  plot_axis_fit(&ay, p, 1);
  double x0 = ox + PL, y0 = oy + PT, w = PW - PL - PR, h = PH;
  int rc = 0;
  rc |= util_buf_printf(b, "<g class=\"panel\">\n<text class=\"title\" x=\"%.1f\" y=\"%.1f\">", ox + PW / 2.0, oy + 24);
  rc |= plot_xml_escape(b, p->title);
  rc |= util_buf_printf(b, "</text>\n<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", x0,
                        y0, w, h);
  char lab[64];
  for (int i = 0; i < ax.n_ticks; i++) {
    double f = plot_frac(&ax, ax.ticks[i]);
    if (f < -1e-9 || f > 1 + 1e-9) continue;
    double x = x0 + f * w;
    rc |= util_buf_printf(b, "<line class=\"grid\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\"/>", x, y0, x, y0 + h);
    rc |= util_buf_printf(b, "<text class=\"xtick\" x=\"%.2f\" y=\"%.1f\">", x, y0 + h + 16);
    if (ax.cat) rc |= plot_xml_escape(b, p->cats[i]);
    else {
      plot_fmt(lab, sizeof lab, ax.ticks[i], ax.step > 0 ? ax.step : ax.ticks[i]);
      rc |= plot_xml_escape(b, lab);
    }
    rc |= util_buf_printf(b, "</text>\n");
  }
  for (int i = 0; i < ay.n_ticks; i++) {
    double f = plot_frac(&ay, ay.ticks[i]);
    if (f < -1e-9 || f > 1 + 1e-9) continue;
    double y = y0 + h - f * h;
    plot_fmt(lab, sizeof lab, ay.ticks[i], ay.step > 0 ? ay.step : ay.ticks[i]);
    rc |= util_buf_printf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.2f\" x2=\"%.1f\" y2=\"%.2f\"/>", x0, y, x0 + w, y);
    rc |= util_buf_printf(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.2f\">%s</text>\n", x0 - 6, y + 4, lab);
  }
  rc |= util_buf_printf(b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\">", x0 + w / 2, y0 + h + 38);
  rc |= plot_xml_escape(b, p->xlabel);
  rc |= util_buf_printf(b, "</text>\n<text class=\"ylabel\" transform=\"translate(%.1f %.1f) rotate(-90)\">", ox + 18,
                        y0 + h / 2);
  rc |= plot_xml_escape(b, p->ylabel);
  rc |= util_buf_printf(b, "</text>\n");

  /* the series: one path each, vertices = its usable points in order */
  for (int i = 0; i < p->n; i++) {
    const plot_series *s = &p->s[i];
    size_t used = 0;
    for (size_t j = 0; j < s->n; j++) used += plot_usable(s->x[j], p->log_x) && plot_usable(s->y[j], p->log_y);
    if (!used) continue; /* nothing to draw; its legend line still names it */
    int c = ((s->color % N_PAL) + N_PAL) % N_PAL;
    rc |= util_buf_printf(b, "<path class=\"%s\" stroke=\"%s\"", plot_style_class(s->style), plot_palette[c]);
    if (s->style == PLOT_LINE_DOTS || s->style == PLOT_POINTS)
      rc |= util_buf_printf(b, " marker-start=\"url(#dot%d)\" marker-mid=\"url(#dot%d)\" marker-end=\"url(#dot%d)\"", c,
                            c, c);
    else if (s->style == PLOT_DIAMONDS)
      rc |= util_buf_printf(b, " marker-start=\"url(#dia%d)\" marker-mid=\"url(#dia%d)\" marker-end=\"url(#dia%d)\"", c,
                            c, c);
    rc |= util_buf_printf(b, " d=\"");
    int first = 1;
    for (size_t j = 0; j < s->n; j++) {
      if (!plot_usable(s->x[j], p->log_x) || !plot_usable(s->y[j], p->log_y)) continue;
      double px = x0 + plot_frac(&ax, s->x[j]) * w, py = y0 + h - plot_frac(&ay, s->y[j]) * h;
      rc |= util_buf_printf(b, "%s%.2f %.2f", first ? "M" : " L", px, py);
      first = 0;
    }
    rc |= util_buf_printf(b, "\"><title>");
    rc |= plot_xml_escape(b, s->name ? s->name : "");
    rc |= util_buf_printf(b, "</title></path>\n");
  }

  /* the legend, below the x label: a swatch in the series' style, then its name */
  double ly = y0 + h + PB + 4;
  for (int i = 0; i < p->n; i++) {
    const plot_series *s = &p->s[i];
    if (!s->name) continue;
    int c = ((s->color % N_PAL) + N_PAL) % N_PAL;
    double sx = x0, sy = ly + LEG_H / 2.0;
    if (s->style == PLOT_POINTS || s->style == PLOT_LINE_DOTS)
      rc |= util_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", sx + 12, sy, plot_palette[c]);
    if (s->style == PLOT_DIAMONDS)
      rc |= util_buf_printf(b, "<polygon class=\"dia\" points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>",
                            sx + 12, sy - 5, sx + 17, sy, sx + 12, sy + 5, sx + 7, sy, plot_palette[c]);
    if (s->style != PLOT_POINTS && s->style != PLOT_DIAMONDS)
      rc |= util_buf_printf(b, "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>",
                            plot_style_class(s->style), sx, sy, sx + 24, sy, plot_palette[c]);
    rc |= util_buf_printf(b, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", sx + 32, sy + 4);
    rc |= plot_xml_escape(b, s->name);
    rc |= util_buf_printf(b, "</text>\n");
    ly += LEG_H;
  }
  rc |= util_buf_printf(b, "</g>\n");
  return rc ? -1 : 0;
}

int plot_svg_write(const char *path, const char *title, const plot_panel *panels, int n_panels, int cols) {
  if (cols < 1) cols = 1;
  if (cols > n_panels) cols = n_panels > 0 ? n_panels : 1;
  int rows = (n_panels + cols - 1) / cols;
  int row_h[256] = {0}; /* rows beyond 256 share the last height: a sweep has few fields */
  double height = title ? DOC_T : 0;
  for (int r = 0; r < rows; r++) {
    int mh = 0;
    for (int c = 0; c < cols && r * cols + c < n_panels; c++) {
      int ph = plot_panel_height(&panels[r * cols + c]);
      mh = ph > mh ? ph : mh;
    }
    row_h[r < 256 ? r : 255] = mh;
    height += mh;
  }
  util_buf b = {0};
  int rc = util_buf_printf(&b,
                           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                           "viewBox=\"0 0 %d %d\">\n<title>",
                           PW * cols, (int)height, PW * cols, (int)height);
  rc |= plot_xml_escape(&b, title ? title : "gptc plot");
  rc |= util_buf_printf(&b, "</title>\n<style type=\"text/css\"><![CDATA[\n"
                            "text { font-family: sans-serif; font-size: 12px; fill: #222; }\n"
                            ".title, .doctitle { font-size: 15px; font-weight: bold; text-anchor: middle; }\n"
                            ".xtick, .xlabel, .ylabel { text-anchor: middle; }\n"
                            ".ytick { text-anchor: end; }\n"
                            ".frame { fill: none; stroke: #444; }\n"
                            ".grid { stroke: #e4e4e4; }\n"
                            "path { fill: none; stroke-linejoin: round; }\n"
                            ".line { stroke-width: 1.8; }\n"
                            ".faint { stroke-width: 1; stroke-opacity: 0.3; }\n"
                            ".dots { stroke-width: 1.2; stroke-dasharray: 5 3; }\n"
                            "path.points, path.diamonds { stroke: none; }\n"
                            ".dia { stroke: #000; stroke-width: 0.8; }\n"
                            "]]></style>\n<defs>\n");
  /* marker definitions: a dot and a diamond per palette colour */
  for (int c = 0; c < N_PAL; c++) {
    rc |= util_buf_printf(&b,
                          "<marker id=\"dot%d\" markerUnits=\"userSpaceOnUse\" markerWidth=\"8\" markerHeight=\"8\" "
                          "refX=\"4\" refY=\"4\"><circle cx=\"4\" cy=\"4\" r=\"3\" fill=\"%s\"/></marker>\n",
                          c, plot_palette[c]);
    rc |= util_buf_printf(&b,
                          "<marker id=\"dia%d\" markerUnits=\"userSpaceOnUse\" markerWidth=\"14\" markerHeight=\"14\" "
                          "refX=\"7\" refY=\"7\"><polygon class=\"dia\" points=\"7,1 13,7 7,13 1,7\" fill=\"%s\"/>"
                          "</marker>\n",
                          c, plot_palette[c]);
  }
  rc |= util_buf_printf(&b, "</defs>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", PW * cols,
                        (int)height);
  double oy = 0;
  if (title) {
    rc |= util_buf_printf(&b, "<text class=\"doctitle\" x=\"%d\" y=\"21\">", PW * cols / 2);
    rc |= plot_xml_escape(&b, title);
    rc |= util_buf_printf(&b, "</text>\n");
    oy = DOC_T;
  }
  for (int i = 0; i < n_panels && !rc; i++) {
    int r = i / cols;
    if (i > 0 && i % cols == 0) oy += row_h[(r - 1) < 256 ? r - 1 : 255];
    rc |= plot_draw_panel(&b, &panels[i], (double)(i % cols) * PW, oy);
  }
  rc |= util_buf_printf(&b, "</svg>\n");
  if (!rc) rc = util_write_file_atomic(path, b.data, b.len);
  util_buf_free(&b);
  return rc ? -1 : 0;
}
