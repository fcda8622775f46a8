package netboot

import (
	"fmt"
	"io"
)

// Print writes the report as Markdown tables (BENCHMARKS.md takes them as
// they are): per figure, each server's median over the rounds, the
// spread, and kiln's advantage: kiln's median as a multiple of that
// server's (of a latency, the server's as a multiple of kiln's), so that
// above 1 kiln is ahead.
func Print(w io.Writer, r *Report, rounds int) {
	for _, f := range r.Figures {
		fmt.Fprintf(w, "\n%s (%d rounds)\n\n", f.Name, rounds)
		unit := f.Unit
		if unit == "" {
			unit = "MiB/s"
		}
		fmt.Fprintf(w, "| server | median %[1]s | min–max %[1]s | kiln's advantage |\n", unit)
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
		kiln, _, _ := stats(f.MiBps["kiln"])
		for _, s := range f.Servers {
			med, lo, hi := stats(f.MiBps[s])
			ratio := "-"
			if kiln > 0 && med > 0 && s != "kiln" {
				adv := kiln / med
				if f.LowerBetter {
					adv = med / kiln
				}
				ratio = fmt.Sprintf("%.2f×", adv)
			}
			fmt.Fprintf(w, "| %s | %s | %s–%s | %s |\n", s, num(med), num(lo), num(hi), ratio)
		}
		for _, n := range f.Notes {
			fmt.Fprintf(w, "\n- %s", n)
		}
		if len(f.Notes) > 0 {
			fmt.Fprintln(w)
		}
	}
	if r.KilnRSSPeak > 0 {
		fmt.Fprintf(w, "\nkiln's HTTP server RSS: %.1f MiB idle, %.1f MiB at its peak while serving the HTTP figures\n",
			float64(r.KilnRSSIdle)/(1<<20), float64(r.KilnRSSPeak)/(1<<20))
	}
}

// num is a figure's value with a decimal more below 10, where one decimal
// would hide the difference between two sub-second storms.
func num(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
