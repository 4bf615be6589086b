import type { JSX } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/**
 * Login attempts by outcome per bucket (uPlot). uPlot sizes and places its elements through the
 * CSSOM (element.style), which a `style-src 'self'` policy allows; it adds no style attribute markup.
 */
export function AttemptsChart(props: { buckets: Array<{ start: string; success: number; failure: number }>; label: string }): JSX.Element {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return undefined;
    const xs = props.buckets.map((b) => Date.parse(b.start) / 1000);
    const data: uPlot.AlignedData = [xs, props.buckets.map((b) => b.success), props.buckets.map((b) => b.failure)];
    const width = () => Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 240,
        series: [
          {},
          { label: 'Success', stroke: '#1a7f37', width: 2, points: { show: true } },
          { label: 'Failure', stroke: '#c62828', width: 2, points: { show: true } },
        ],
        axes: [{ stroke: '#333' }, { stroke: '#333', grid: { stroke: '#e3e3e3' } }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      },
      data,
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: 240 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.buckets]);
  return <div class="chart" ref={host} role="img" aria-label={props.label} />;
}
