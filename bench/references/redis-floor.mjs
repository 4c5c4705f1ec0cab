// Reference of "redirect, cache hit": node:http, one Redis GET of the code's cache key,
// a 302 with the stored URL. Nothing else (no routing framework, no metrics, no clicks).
import Redis from 'ioredis';
import { listen } from './common.mjs';

const redis = new Redis({
  host: process.env.BENCH_REDIS_HOST,
  port: Number(process.env.BENCH_REDIS_PORT),
  enableAutoPipelining: false,
});

listen((req, res) => {
  const code = req.url.slice(1);
  redis.get(`u:${code}`).then(
    (value) => {
      if (value === null) {
        res.writeHead(404).end();
        return;
      }
      // the cache entry is L|<version>|<type>|<expiresAt>|<url>: the URL follows the 4th '|'
      let at = -1;
      for (let i = 0; i < 4; i++) at = value.indexOf('|', at + 1);
      res.writeHead(302, { location: value.slice(at + 1) }).end();
    },
    () => res.writeHead(503).end(),
  );
});
