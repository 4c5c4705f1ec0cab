import { registerDecorator, type ValidationArguments } from 'class-validator';
import { checkAlias, checkExpiresAt, checkTargetUrl, normaliseTargetUrl, OPEN_TARGET_POLICY, type TargetPolicy } from '@shortener/links';

/**
 * Which targets are refused (the shortener's own host, private addresses, BLOCKED_HOSTS);
 * set once at start-up from the configuration, before the first request.
 */
export const targetPolicy = { value: OPEN_TARGET_POLICY as TargetPolicy };

/** The normalised form of a target the validators accepted: what is stored and redirected to. */
export function normalisedTarget(url: string): string {
  const check = normaliseTargetUrl(url, targetPolicy.value);
  return check.ok ? check.url : url;
}

function ruleDecorator(name: string, rule: (value: string) => string | null): PropertyDecorator {
  return (target, propertyName) => {
    const messages = new WeakMap<object, string>();
    registerDecorator({
      name,
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate(value: unknown, args: ValidationArguments) {
          if (typeof value !== 'string') return true; // IsString reports the type
          const problem = rule(value);
          if (problem) messages.set(args.object, problem);
          return problem === null;
        },
        defaultMessage(args: ValidationArguments) {
          return `${args.property} ${messages.get(args.object) ?? 'is invalid'}`;
        },
      },
    });
  };
}

export const IsTargetUrl = () => ruleDecorator('isTargetUrl', (value) => checkTargetUrl(value, targetPolicy.value));
export const IsAlias = () => ruleDecorator('isAlias', checkAlias);
export const IsFutureDateTime = () => ruleDecorator('isFutureDateTime', (value) => checkExpiresAt(value));
