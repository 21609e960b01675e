package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart colours.
var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colText       = color.RGBA{30, 30, 30, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	colAxis       = color.RGBA{120, 120, 120, 255}
	colOurs       = color.RGBA{31, 119, 180, 255}
	colFull       = color.RGBA{255, 127, 14, 255}
	colTarget     = color.RGBA{214, 39, 40, 255}
	colMissing    = color.RGBA{150, 150, 150, 255}
)

// panel is one metric of the chart.
type panel struct {
	title  string
	get    func(Row) float64
	log    bool
	target float64 // 0: none
}

// WriteChart draws the warm rows as a PNG: one panel per metric, bars for
// both designs at every (history, batch).
func WriteChart(w io.Writer, rows []Row) error {
	const width, height = 1400, 920
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(colBackground), image.Point{}, draw.Src)
	c := &canvas{img: img}
	c.text(20, 28, "Cost per observation, warm, against prior history (sessions of ~40 primitives per attacker)", colText)
	c.legend(width-420, 18)
	panels := []panel{
		{title: "DynamoDB requests per observation (log scale)", get: func(r Row) float64 { return r.RequestsPerObs }, log: true},
		{title: "Read units per observation (log scale; 0 drawn as a dot)", get: func(r Row) float64 { return r.RCUPerObs }, log: true, target: 0.1},
		{title: "Write units per observation", get: func(r Row) float64 { return r.WCUPerObs }, target: 4.0},
		{title: "Handler CPU time per observation, microseconds (log scale)", get: func(r Row) float64 { return r.CPUMicrosPerObs }, log: true},
	}
	pw, ph := width/2, (height-40)/2
	for i, p := range panels {
		x0, y0 := (i%2)*pw, 40+(i/2)*ph
		c.panel(image.Rect(x0+10, y0+10, x0+pw-10, y0+ph-10), p, rows)
	}
	return png.Encode(w, img)
}

type canvas struct {
	img *image.RGBA
}

func (c *canvas) text(x, y int, s string, col color.Color) {
	d := &font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}

func (c *canvas) rect(r image.Rectangle, col color.Color) {
	draw.Draw(c.img, r, image.NewUniform(col), image.Point{}, draw.Src)
}

func (c *canvas) hline(x0, x1, y int, col color.Color, dash int) {
	for x := x0; x <= x1; x++ {
		if dash == 0 || (x-x0)/dash%2 == 0 {
			c.img.Set(x, y, col)
		}
	}
}

func (c *canvas) vline(x, y0, y1 int, col color.Color) {
	for y := y0; y <= y1; y++ {
		c.img.Set(x, y, col)
	}
}

func (c *canvas) legend(x, y int) {
	c.rect(image.Rect(x, y-10, x+14, y+2), colOurs)
	c.text(x+20, y, "incremental (this design)", colText)
	c.rect(image.Rect(x+210, y-10, x+224, y+2), colFull)
	c.text(x+230, y, "full recompute", colText)
	c.hline(x, x+14, y+16, colTarget, 3)
	c.text(x+20, y+20, "target", colText)
	c.text(x+210, y+20, "n/r: not run", colMissing)
}

func (c *canvas) panel(area image.Rectangle, p panel, rows []Row) {
	c.text(area.Min.X, area.Min.Y+10, p.title, colText)
	plot := image.Rect(area.Min.X+58, area.Min.Y+24, area.Max.X-8, area.Max.Y-44)
	var values []float64
	for _, r := range rows {
		values = append(values, p.get(r))
	}
	if p.target > 0 {
		values = append(values, p.target)
	}
	scale := newScale(values, p.log, plot)
	for _, t := range scale.ticks {
		y := scale.y(t)
		c.hline(plot.Min.X, plot.Max.X, y, colGrid, 0)
		label := tickLabel(t)
		c.text(plot.Min.X-6-textWidth(label), y+4, label, colText)
	}
	c.vline(plot.Min.X, plot.Min.Y, plot.Max.Y, colAxis)
	c.hline(plot.Min.X, plot.Max.X, plot.Max.Y, colAxis, 0)
	cs := cells(rows)
	if len(cs) == 0 {
		return
	}
	hs := histories(rows)
	groupW := float64(plot.Dx()) / float64(len(cs))
	barW := int(math.Max(3, groupW*0.32))
	for i, cell := range cs {
		gx := plot.Min.X + int(float64(i)*groupW)
		mid := gx + int(groupW/2)
		for j, d := range []Design{Incremental, FullRecompute} {
			col := colOurs
			if d == FullRecompute {
				col = colFull
			}
			x := mid - barW - 1 + j*(barW+2)
			r := find(rows, d, cell[0], cell[1])
			switch {
			case r == nil:
				c.text(x+barW/2-7, plot.Max.Y-4, "n/r", colMissing)
			case p.get(*r) <= 0:
				c.rect(image.Rect(x+barW/2-2, plot.Max.Y-5, x+barW/2+2, plot.Max.Y-1), col)
			default:
				c.rect(image.Rect(x, scale.y(p.get(*r)), x+barW, plot.Max.Y), col)
			}
		}
		label := "b=" + strconv.Itoa(cell[1])
		c.text(mid-textWidth(label)/2, plot.Max.Y+15, label, colText)
		if i > 0 && cs[i-1][0] != cell[0] {
			c.vline(gx, plot.Min.Y, plot.Max.Y+34, colAxis)
		}
	}
	for _, h := range hs {
		first, last := -1, -1
		for i, cell := range cs {
			if cell[0] == h {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		x0 := plot.Min.X + int(float64(first)*groupW)
		x1 := plot.Min.X + int(float64(last+1)*groupW)
		label := fmt.Sprintf("history %d", h)
		c.text((x0+x1)/2-textWidth(label)/2, plot.Max.Y+32, label, colText)
	}
	if p.target > 0 {
		y := scale.y(p.target)
		c.hline(plot.Min.X, plot.Max.X, y, colTarget, 6)
		c.text(plot.Max.X-textWidth("target")-2, y-3, "target", colTarget)
	}
}

// scale maps values to pixel rows.
type scale struct {
	log    bool
	lo, hi float64
	top    int
	bottom int
	ticks  []float64
}

func newScale(values []float64, log bool, plot image.Rectangle) scale {
	s := scale{log: log, top: plot.Min.Y, bottom: plot.Max.Y}
	hi := 0.0
	lo := math.Inf(1)
	for _, v := range values {
		hi = math.Max(hi, v)
		if v > 0 {
			lo = math.Min(lo, v)
		}
	}
	if hi <= 0 {
		hi = 1
	}
	if log {
		if math.IsInf(lo, 1) {
			lo = hi / 10
		}
		s.lo = math.Pow(10, math.Floor(math.Log10(lo)))
		s.hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if s.hi <= s.lo {
			s.hi = s.lo * 10
		}
		for t := s.lo; t <= s.hi*1.0001; t *= 10 {
			s.ticks = append(s.ticks, t)
		}
		return s
	}
	step := math.Pow(10, math.Floor(math.Log10(hi)))
	if hi/step < 3 {
		step /= 2
	}
	s.lo, s.hi = 0, math.Ceil(hi*1.1/step)*step
	for t := 0.0; t <= s.hi*1.0001; t += step {
		s.ticks = append(s.ticks, t)
	}
	return s
}

func (s scale) y(v float64) int {
	var f float64
	if s.log {
		v = math.Max(v, s.lo)
		f = (math.Log10(v) - math.Log10(s.lo)) / (math.Log10(s.hi) - math.Log10(s.lo))
	} else {
		f = (v - s.lo) / (s.hi - s.lo)
	}
	return s.bottom - int(math.Round(f*float64(s.bottom-s.top)))
}

func tickLabel(t float64) string {
	switch {
	case t >= 1000:
		return strconv.FormatFloat(t, 'f', 0, 64)
	case t >= 1:
		return strconv.FormatFloat(t, 'g', 4, 64)
	default:
		return strconv.FormatFloat(t, 'g', 3, 64)
	}
}
