import type { JSX } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/**
 * Login attempts by outcome per bucket (uPlot). uPlot sizes and places its elements through the
 * CSSOM (element.style), which a `style-src 'self'` policy allows; it adds no style attribute markup.
 */
export function AttemptsChart(props: { buckets: Array<{ start: string; success: number; failure: number }>; from: string; to: string; bucket: 'hour' | 'day'; label: string }): JSX.Element {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return undefined;
    const data = alignedBuckets(props.buckets, props.from, props.to, props.bucket);
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
        scales: { x: { time: true, range: () => [data[0][0] ?? 0, data[0].at(-1) ?? 1] }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
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
  }, [props.buckets, props.from, props.to, props.bucket]);
  return <div class="chart" ref={host} role="img" aria-label={props.label} />;
}

/** Every bucket of the range, in seconds since the epoch (UTC-aligned, as the API buckets), empty ones as 0. */
function alignedBuckets(buckets: Array<{ start: string; success: number; failure: number }>, from: string, to: string, bucket: 'hour' | 'day'): uPlot.AlignedData {
  const step = bucket === 'hour' ? 3600 : 86_400;
  const first = Math.floor(Date.parse(from) / 1000 / step) * step;
  const last = Math.floor((Date.parse(to) / 1000 - 1) / step) * step;
  const byStart = new Map(buckets.map((b) => [Date.parse(b.start) / 1000, b]));
  const xs: number[] = [];
  const success: number[] = [];
  const failure: number[] = [];
  for (let x = first; x <= last; x += step) {
    const b = byStart.get(x);
    xs.push(x);
    success.push(b?.success ?? 0);
    failure.push(b?.failure ?? 0);
  }
  return [xs, success, failure];
}
