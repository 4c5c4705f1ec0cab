import { readerEnvironmentSchema, validateEnvironment } from '@shortener/config';
import { exitOnStartFailure, startService } from '@shortener/observability';
import { LineRpcServer } from '@shortener/rpc';
import { ReaderModule } from './reader.module';

async function main(): Promise<void> {
  const config = validateEnvironment(readerEnvironmentSchema, process.env);
  await startService({
    name: 'reader',
    module: ReaderModule.forRoot(config),
    http: { host: config.HTTP_HOST, port: config.HTTP_PORT },
    rpc: new LineRpcServer({ host: config.RPC_HOST, port: config.RPC_PORT, secret: config.RPC_SECRET }),
  });
}

main().catch(exitOnStartFailure('reader'));
