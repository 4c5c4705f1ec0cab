import { validateEnvironment, writerEnvironmentSchema } from '@shortener/config';
import { exitOnStartFailure, startService } from '@shortener/observability';
import { LineRpcServer } from '@shortener/rpc';
import { WriterModule } from './writer.module';

async function main(): Promise<void> {
  const config = validateEnvironment(writerEnvironmentSchema, process.env);
  await startService({
    name: 'writer',
    module: WriterModule.forRoot(config),
    http: { host: config.HTTP_HOST, port: config.HTTP_PORT },
    rpc: new LineRpcServer({ host: config.RPC_HOST, port: config.RPC_PORT, secret: config.RPC_SECRET }),
  });
}

main().catch(exitOnStartFailure('writer'));
