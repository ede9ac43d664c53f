// Screenshots of an hwsim trace in speedscope (a third-party trace viewer that reads the same
// Chrome trace-event JSON as ui.perfetto.dev), used for docs/images/attention-trace-h100-speedscope-*.png.
// Not part of the build: needs Debian's chromium, and `npm install speedscope@1.25.0 playwright-core`.
//   hwsim attention --device h100-sxm --batch 4 --heads 16 --seqlen 4096 --head-dim 128 --causal \
//     --dtype fp16 --kernel fa3 --pass fwd --trace web/trace.json --trace-sms 8
//   cp -r node_modules/speedscope/dist/release web/speedscope && (cd web && python3 -m http.server 8765 &)
//   node trace_screenshot.js        # writes web/track1.png (SM 000), track2.png (SM 000 · copy), ...
// speedscope shows one thread at a time; 'n' steps to the next thread.
const { chromium } = require('playwright-core');
(async () => {
  const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const p = await b.newPage({ viewport: { width: 1400, height: 260 } });
  await p.goto('http://localhost:8765/speedscope/index.html#profileURL=http://localhost:8765/trace.json&title=hwsim%20FA3%20causal%20H100');
  await p.waitForTimeout(2500);
  for (let k = 1; k <= 3; k++) { await p.keyboard.press('n'); await p.waitForTimeout(800);
    await p.screenshot({ path: `web/track${k}.png` }); }
  await b.close();
})();
