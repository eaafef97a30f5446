# Bar chart of the kvfs/plain and kvfs/fio throughput ratios per scenario,
# from the data file written by bench/run_bench.py:
#
#   gnuplot -e "datafile='ratios.dat'; outfile='latest.png'" bench/plot.gp
#
# Data: one line per scenario, "label" <tab> kvfs/plain <tab> kvfs/fio, NaN
# where a ratio does not apply. The y axis is logarithmic (ratios span
# several decades); the line at 1 is parity, above it kvfs is faster.

if (!exists("datafile")) datafile = 'bench/results/latest.dat'
if (!exists("outfile")) outfile = 'bench/results/latest.png'

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1600,900 noenhanced font "sans,10"
} else {
  set terminal png size 1600,900 noenhanced
}
set output outfile

set datafile separator "\t"
set datafile missing "NaN"
set title "kvfs side by side: throughput ratios (median of runs; above 1: kvfs faster)"
set ylabel "kvfs / contender"
set logscale y 10
set format y "%g"
set grid ytics mytics
set key top left
set xtics rotate by -55 scale 0 nomirror
set bmargin 13
set rmargin 18
set style fill solid 0.85 border lc rgb "#333333"
set boxwidth 0.38
set offsets 0.6, 0.6, 0, 0

# Bars rise from the parity line: below 1, kvfs is slower.
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "#000000" front

up(v) = (v >= 1 ? v * 1.08 : NaN)
down(v) = (v < 1 ? v / 1.08 : NaN)
plot datafile using ($0 - 0.2):2:($0 - 0.39):($0 - 0.01):(1):2:xtic(1) with boxxyerror lc rgb "#3b75af" title "kvfs / plain", \
     ''       using ($0 + 0.2):3:($0 + 0.01):($0 + 0.39):(1):3 with boxxyerror lc rgb "#ef8636" title "kvfs / fio (O_DIRECT)", \
     ''       using ($0 - 0.2):(up($2)):(sprintf("%.2g", $2)) with labels rotate by 90 left font ",8" notitle, \
     ''       using ($0 - 0.2):(down($2)):(sprintf("%.2g", $2)) with labels rotate by 90 right font ",8" notitle, \
     ''       using ($0 + 0.2):(up($3)):(sprintf("%.2g", $3)) with labels rotate by 90 left font ",8" notitle, \
     ''       using ($0 + 0.2):(down($3)):(sprintf("%.2g", $3)) with labels rotate by 90 right font ",8" notitle
