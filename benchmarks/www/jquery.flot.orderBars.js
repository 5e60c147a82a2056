/* slubcy's own stand-in for the flot "orderBars" plugin that asv's
   dashboard loads from a CDN (no package registry this project installs
   from carries it; benchmarks/dashboard.py serves this file in its place).
   Bars of the series that set `bars.order` are drawn side by side: each
   takes an equal share of the bar width, in the order of `bars.order`,
   the group centred where a single bar would be. */
(function ($) {
    function ordered(plot) {
        return $.grep(plot.getData(), function (s) {
            return s.bars && s.bars.show && s.bars.order != null;
        });
    }

    function init(plot) {
        plot.hooks.processDatapoints.push(function (plot, series, datapoints) {
            if (!series.bars || !series.bars.show || series.bars.order == null)
                return;
            var group = ordered(plot), rank = 0;
            $.each(group, function (_, s) {
                if (s.bars.order < series.bars.order)
                    rank++;
            });
            var full = series.bars.barWidth, width = full / Math.max(group.length, 1);
            var shift = rank * width - (series.bars.align === "center" ? (full - width) / 2 : 0);
            series.bars.barWidth = width;
            series.bars.align = series.bars.align === "center" ? "center" : "left";
            var ps = datapoints.pointsize, pts = datapoints.points;
            for (var i = 0; i < pts.length; i += ps)
                if (pts[i] != null)
                    pts[i] += shift;
        });
    }

    $.plot.plugins.push({init: init, options: {series: {bars: {order: null}}},
                         name: "orderBars", version: "slubcy-1"});
})(jQuery);
